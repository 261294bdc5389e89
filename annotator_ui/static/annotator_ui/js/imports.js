/* Import page: drag-and-drop upload of many files straight to the API, with an upload progress bar.
 * Files go in batches (the server takes at most a few hundred files per request); each batch becomes one
 * import job. With one batch the page moves on to the job's report; with several it lists their links.
 * No inline script or style anywhere: the page runs under a strict Content-Security-Policy. */
(function () {
  "use strict";
  var MAX_FILES_PER_REQUEST = 500;
  var MAX_BYTES_PER_REQUEST = 512 * 1024 * 1024;

  var form = document.getElementById("upload-form");
  if (!form) { return; }
  var input = document.getElementById("upload-files");
  var zone = document.getElementById("dropzone");
  var selection = document.getElementById("upload-selection");
  var bar = document.getElementById("upload-progress");
  var statusLine = document.getElementById("upload-status");
  var submit = document.getElementById("upload-submit");
  var sourceInput = document.getElementById("upload-source");
  var chosen = [];

  function csrfToken() {
    var field = form.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function describe(files) {
    var bytes = 0;
    for (var i = 0; i < files.length; i++) { bytes += files[i].size; }
    return files.length + (files.length === 1 ? " file, " : " files, ") + (bytes / 1048576).toFixed(1) + " MB";
  }

  function choose(fileList) {
    chosen = Array.prototype.slice.call(fileList || []);
    selection.textContent = chosen.length ? describe(chosen) + " chosen." : "No file chosen.";
    submit.disabled = chosen.length === 0;
    statusLine.textContent = "";
  }

  function isZip(file) { return /\.zip$/i.test(file.name); }

  function batches(files) {
    var result = [], current = [], bytes = 0;
    files.forEach(function (file) {
      if (current.length && (current.length >= MAX_FILES_PER_REQUEST || bytes + file.size > MAX_BYTES_PER_REQUEST)) {
        result.push(current); current = []; bytes = 0;
      }
      current.push(file); bytes += file.size;
    });
    if (current.length) { result.push(current); }
    return result;
  }

  function errorText(xhr) {
    try {
      var body = JSON.parse(xhr.responseText);
      if (body.detail) { return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); }
      return JSON.stringify(body);
    } catch (e) { return "HTTP " + xhr.status; }
  }

  function send(files, kind, doneBytes, totalBytes) {
    return new Promise(function (resolve, reject) {
      var data = new FormData();
      data.append("kind", kind);
      if (sourceInput && sourceInput.value) { data.append("source_name", sourceInput.value); }
      files.forEach(function (file) { data.append("files", file, file.name); });
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.dataset.apiUrl);
      xhr.setRequestHeader("X-CSRFToken", csrfToken());
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (event) {
        if (event.lengthComputable && totalBytes) {
          var sent = doneBytes + event.loaded * (files.reduce(function (s, f) { return s + f.size; }, 0) / event.total);
          bar.value = Math.min(100, Math.round(100 * sent / totalBytes));
        }
      });
      xhr.addEventListener("load", function () {
        if (xhr.status === 201) { resolve(JSON.parse(xhr.responseText)); } else { reject(new Error(errorText(xhr))); }
      });
      xhr.addEventListener("error", function () { reject(new Error("the connection failed")); });
      xhr.send(data);
    });
  }

  function detailUrl(id) { return form.dataset.detailUrl.replace(/\/0\/$/, "/" + id + "/"); }

  async function upload(event) {
    event.preventDefault();
    if (!chosen.length) { return; }
    submit.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    var kind = chosen.length === 1 && isZip(chosen[0]) ? "zip" : "upload";
    var groups = kind === "zip" ? [chosen] : batches(chosen);
    var totalBytes = chosen.reduce(function (s, f) { return s + f.size; }, 0);
    var doneBytes = 0, jobs = [];
    try {
      for (var i = 0; i < groups.length; i++) {
        statusLine.textContent = "Uploading " + describe(groups[i]) + (groups.length > 1 ? " (part " + (i + 1) + " of " + groups.length + ")" : "") + "…";
        jobs.push(await send(groups[i], kind, doneBytes, totalBytes));
        doneBytes += groups[i].reduce(function (s, f) { return s + f.size; }, 0);
      }
    } catch (error) {
      statusLine.textContent = "Upload failed: " + error.message;
      statusLine.classList.add("message", "message--error");
      submit.disabled = false;
      return;
    }
    bar.value = 100;
    if (jobs.length === 1) {
      statusLine.textContent = "Uploaded. Opening the import…";
      window.location.assign(detailUrl(jobs[0].id));
      return;
    }
    statusLine.textContent = "Uploaded as " + jobs.length + " import jobs: ";
    jobs.forEach(function (job, index) {
      var link = document.createElement("a");
      link.href = detailUrl(job.id);
      link.textContent = "#" + job.id;
      statusLine.appendChild(link);
      if (index < jobs.length - 1) { statusLine.appendChild(document.createTextNode(", ")); }
    });
  }

  input.addEventListener("change", function () { choose(input.files); });
  zone.addEventListener("click", function (event) { if (event.target !== input) { input.click(); } });
  zone.addEventListener("keydown", function (event) {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); }
  });
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("dropzone--over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.remove("dropzone--over"); });
  });
  zone.addEventListener("drop", function (event) {
    if (event.dataTransfer && event.dataTransfer.files) { choose(event.dataTransfer.files); }
  });
  form.addEventListener("submit", upload);
}());
