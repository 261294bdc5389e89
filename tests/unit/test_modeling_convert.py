"""Training from converted InternVL2 / HumanAesExpert weights through the platform: the registry accepts the output
of `python -m model_core convert`, and a LoRA preset started with `init_model_version` trains from it; bad choices
are refused at job creation with a clear 400 and record nothing."""

from __future__ import annotations

import json
import shutil

import pytest

from aesplatform.common.exceptions import ServiceError
from aesplatform.common.models import JobState
from aesplatform.modeling import services
from aesplatform.modeling.models import ModelVersion, TrainingJob
from tests.model.internvl2_original import write_original_checkpoint
from tests.support.modeling import FAST, frozen_version, synthetic_images

pytestmark = pytest.mark.django_db

CPU = {**FAST, "grad_accum": 1, "num_workers": 0, "device": "cpu", "precision": "fp32", "max_tiles": 1}


@pytest.fixture(autouse=True)
def _training_root(settings, tmp_path):
    settings.AESP_TRAINING_ROOT = tmp_path / "training"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from model_core.convert import convert_internvl2

    root = tmp_path_factory.mktemp("released")
    write_original_checkpoint(root / "HumanAesExpert-1B", heads=True, side_files=True)
    convert_internvl2(root / "HumanAesExpert-1B", root / "converted", lora_r=4)
    return root / "converted"


@pytest.fixture
def version(curator_user):
    return frozen_version(synthetic_images(10), user=curator_user)


def test_registry_accepts_the_converted_directory(converted):
    registered = services.model_version_register(checkpoint_path=str(converted), name="he-1b-converted")
    assert registered.backend == "model_core"
    assert registered.config["model"]["head_kind"] == "linear"
    assert registered.config["model"]["backbone"]["source"] == str(converted.resolve() / "backbone")


def test_a_lora_preset_trains_from_the_registered_conversion(curator_client, version, converted):
    registered = curator_client.post("/api/model-versions/", {"checkpoint_path": str(converted)}, format="json")
    assert registered.status_code == 201, registered.content
    mv_id = registered.json()["id"]
    response = curator_client.post("/api/training-jobs/", {
        "dataset_version": version.pk, "preset": "1B-LoRA", "config": {**CPU, "init_model_version": mv_id}},
        format="json")
    assert response.status_code == 201, response.content
    job = TrainingJob.objects.get(pk=response.json()["id"])
    assert job.config["train"]["init_checkpoint"] == str(converted.resolve())
    assert job.config["model"] == ModelVersion.objects.get(pk=mv_id).config["model"]
    assert job.config["init_model_version"] == mv_id
    assert job.config["model"]["chat"]["recipe"] == "reference"
    other = curator_client.post("/api/training-jobs/", {
        "dataset_version": version.pk, "preset": "1B-LoRA",
        "config": {**CPU, "init_model_version": mv_id, "recipe": "platform"}}, format="json")
    assert other.status_code == 400 and "keeps the layout" in other.json()["detail"]
    assert TrainingJob.objects.count() == 1

    job = services.training_job_run(job_id=job.pk)
    assert job.state == JobState.SUCCEEDED, job.error
    trained = job.model_version
    assert trained.config["model"]["head_kind"] == "linear"
    from model_core.model import read_checkpoint_config

    payload = read_checkpoint_config(trained.checkpoint_path)
    assert payload["model"]["backbone"]["source"] == str(converted.resolve() / "backbone")


@pytest.mark.parametrize("case,code", [
    ("unknown_id", "unknown_model_version"),
    ("remote_code_backend", "invalid_config"),
    ("tiny_preset", "invalid_config"),
    ("with_backbone_path", "invalid_config"),
    ("not_an_int", "invalid_config"),
    ("checkpoint_gone", "checkpoint_missing"),
])
def test_bad_init_model_version_is_refused_and_records_nothing(curator_client, version, converted, tmp_path,
                                                               case, code):
    preset, config = "1B-LoRA", dict(CPU)
    if case == "unknown_id":
        config["init_model_version"] = 987654
    elif case == "remote_code_backend":
        remote = ModelVersion.objects.create(name="remote", backend="humanaesexpert", checkpoint_path="/srv/HAE-1B")
        config["init_model_version"] = remote.pk
    elif case == "not_an_int":
        config["init_model_version"] = "1"
    else:
        path = converted
        if case == "checkpoint_gone":
            path = tmp_path / "copy"
            shutil.copytree(converted, path)
        mv = services.model_version_register(checkpoint_path=str(path))
        config["init_model_version"] = mv.pk
        if case == "tiny_preset":
            preset = "tiny-cpu"
        elif case == "with_backbone_path":
            config["backbone_path"] = str(converted / "backbone")
        elif case == "checkpoint_gone":
            shutil.rmtree(path)
    jobs = TrainingJob.objects.count()
    response = curator_client.post("/api/training-jobs/", {"dataset_version": version.pk, "preset": preset,
                                                           "config": config}, format="json")
    assert response.status_code == 400, response.content
    assert code in json.dumps(response.json())
    assert TrainingJob.objects.count() == jobs
    with pytest.raises(ServiceError) as info:
        services.training_job_create(dataset_version=version, preset=preset, config=config, created_by=None,
                                     enqueue=False)
    assert info.value.code == code


def test_a_tiny_model_version_continues_with_the_tiny_preset_only(curator_user, version, tmp_path):
    from model_core.model import ModelConfig, build_model, save_model

    save_model(build_model(ModelConfig(train_vision=True, head_dropout=0.0)), tmp_path / "tiny")
    mv = services.model_version_register(checkpoint_path=str(tmp_path / "tiny"))
    job = services.training_job_create(dataset_version=version, preset="tiny-cpu", enqueue=False,
                                       config={**CPU, "init_model_version": mv.pk}, created_by=curator_user)
    assert job.config["train"]["init_checkpoint"] == str((tmp_path / "tiny").resolve())
    assert job.config["backbone_path"] == ""
    with pytest.raises(ServiceError) as info:
        services.training_job_create(dataset_version=version, preset="8B-LoRA", enqueue=False,
                                     config={**CPU, "init_model_version": mv.pk}, created_by=curator_user)
    assert info.value.code == "invalid_config" and "tiny" in info.value.message



def test_the_job_form_offers_registered_models_to_start_from(curator_user, version, converted):
    from django.urls import reverse

    from tests.support.modeling import logged_in_client

    mv = services.model_version_register(checkpoint_path=str(converted), name="converted-for-ui")
    curator = logged_in_client(curator_user)
    url = reverse("ui:training_job_new")
    assert "converted-for-ui" in curator.get(url).content.decode()
    response = curator.post(url, {"dataset_version": version.pk, "preset": "1B-LoRA", "init_model_version": mv.pk})
    assert response.status_code == 302, response.content
    job = TrainingJob.objects.latest("id")
    assert job.config["train"]["init_checkpoint"] == str(converted.resolve())
    response = curator.post(url, {"dataset_version": version.pk, "preset": "tiny-cpu", "init_model_version": mv.pk})
    assert response.status_code == 400 and b"real" in response.content
