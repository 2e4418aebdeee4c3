// spill_guard review studio: keyboard shortcuts and small conveniences. Served from /static (the CSP allows
// only 'self' scripts); reads no record text, builds no markup from data.
(function () {
  "use strict";

  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }

  function follow(id) {
    var link = document.getElementById(id);
    if (link) { window.location.assign(link.href); }
  }

  function submitLabel(value) {
    var form = document.getElementById("label-form");
    if (!form) { return; }
    var button = form.querySelector('button[name="label"][value="' + value + '"]');
    if (button) {
      if (form.requestSubmit) { form.requestSubmit(button); } else { button.click(); }
    }
  }

  function toggleHelp() {
    var help = document.getElementById("help");
    if (help) { help.hidden = !help.hidden; }
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (typing(event.target)) {
      if (event.key === "Escape") { event.target.blur(); event.preventDefault(); }
      return;
    }
    var page = document.body.getAttribute("data-page");
    var key = event.key;
    if (key === "?") { toggleHelp(); event.preventDefault(); return; }
    if (page === "focus") {
      var form = document.getElementById("label-form");
      if (key === "c") { submitLabel("correct"); }
      else if (key === "i") { submitLabel("incorrect"); }
      else if (key === "s") { submitLabel("skip"); }
      else if (key === "Enter" && form) { submitLabel(form.getAttribute("data-suggestion")); }
      else if (key === "j" || key === "ArrowRight") { follow("next-item"); }
      else if (key === "k" || key === "ArrowLeft") { follow("prev-item"); }
      else if (key === "n") { var note = document.getElementById("note"); if (note) { note.focus(); } }
      else if (key === "a") { var fix = document.getElementById("corrected"); if (fix) { fix.focus(); } }
      else { return; }
      event.preventDefault();
    } else if (page === "queue") {
      if (key === "r") { follow("start"); }
      else if (key === "j" || key === "ArrowRight") { follow("next-page"); }
      else if (key === "k" || key === "ArrowLeft") { follow("prev-page"); }
      else { return; }
      event.preventDefault();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var helpButton = document.getElementById("help-toggle");
    if (helpButton) { helpButton.addEventListener("click", toggleHelp); }
    var selectPage = document.getElementById("select-page");
    if (selectPage) {
      selectPage.addEventListener("change", function () {
        var boxes = document.querySelectorAll("input.pick");
        for (var i = 0; i < boxes.length; i++) { boxes[i].checked = selectPage.checked; }
      });
    }
  });
})();
