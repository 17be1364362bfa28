// The course page while companion is telling Zoom something: poll the course's Zoom state and
// reload the page once it changes, so the teacher sees the result without pressing anything.
// A static file because the Content-Security-Policy allows no inline script.
(function () {
  "use strict";
  var box = document.getElementById("zoom-state");
  if (!box || !box.dataset.poll) {
    return;
  }
  var url = box.dataset.poll;
  var version = box.dataset.version;
  var delay = 1500;
  var maxDelay = 15000;

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.json();
      })
      .then(function (state) {
        if (state.version !== version || !state.busy) {
          window.location.reload();
          return;
        }
        // Zoom is slow or being retried: ask less often the longer it takes.
        delay = Math.min(maxDelay, Math.round(delay * 1.5));
        window.setTimeout(poll, delay);
      })
      .catch(function () {
        delay = maxDelay;
        window.setTimeout(poll, delay);
      });
  }

  window.setTimeout(poll, delay);
})();
