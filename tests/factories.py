"""factory_boy factories shared by the test suites."""

from __future__ import annotations

import hashlib

import factory
from django.contrib.auth import get_user_model

from aesplatform.accounts.roles import Role
from aesplatform.accounts.services import roles_ensure_groups

TEST_PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.PostGenerationMethodCall("set_password", TEST_PASSWORD)

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        roles = list(extracted or [])
        if Role.ADMIN in roles:
            self.is_staff = self.is_superuser = True
        self.save()
        if roles:
            groups = roles_ensure_groups()
            self.groups.set([groups[Role(r)] for r in roles])


def annotator(**kwargs):
    return UserFactory(roles=[Role.ANNOTATOR], **kwargs)


def curator(**kwargs):
    return UserFactory(roles=[Role.CURATOR], **kwargs)


def admin(**kwargs):
    return UserFactory(roles=[Role.ADMIN], **kwargs)


class ImageFactory(factory.django.DjangoModelFactory):
    """A catalog row for tests that do not need real pixels (the files are tiny placeholders)."""

    class Meta:
        model = "catalog.Image"

    sha256 = factory.Sequence(lambda n: hashlib.sha256(f"image-{n}".encode()).hexdigest())
    phash = factory.Sequence(lambda n: f"{n:016x}")
    width = 640
    height = 480
    format = "JPEG"
    mode = "RGB"
    file_size = 1234
    original_name = factory.Sequence(lambda n: f"img{n}.jpg")
    source = "tests"
    file = factory.LazyAttribute(lambda o: f"images/{o.sha256[:2]}/{o.sha256}.jpg")
    thumbnail = factory.LazyAttribute(lambda o: f"thumbs/{o.sha256[:2]}/{o.sha256}.jpg")


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "annotation.Campaign"

    name = factory.Sequence(lambda n: f"campaign {n}")
    mode = "expert"
    redundancy = 3
    created_by = factory.LazyFunction(curator)


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "annotation.Task"

    campaign = factory.SubFactory(CampaignFactory)
    image = factory.SubFactory(ImageFactory)
