// Applies the theme chosen with the header's toggle (stored in this browser) before the page
// paints, so a dark choice never flashes light. The toggle itself is in dashboard.js.
(function () {
  "use strict";
  try {
    var theme = window.localStorage.getItem("il-theme");
    if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  } catch (e) { /* storage disabled: follow the system */ }
})();
