// The web UI's shell: hash routes to pages, the API key dialog, errors shown as the message.

import { apiKey, setApiKey } from "./api.js";
import { clearError, showError } from "./dom.js";
import { renderAdmin } from "./pages/admin.js";
import { renderCreate } from "./pages/create.js";
import { renderGallery } from "./pages/gallery.js";
import { renderJob } from "./pages/job.js";

const page = document.getElementById("page");
const keyDialog = document.getElementById("key-dialog");

function askForKey() {
  document.getElementById("key-input").value = apiKey();
  if (!keyDialog.open) keyDialog.showModal();
}

keyDialog.addEventListener("close", () => {
  if (keyDialog.returnValue === "save") setApiKey(document.getElementById("key-input").value.trim());
  if (keyDialog.returnValue === "clear") setApiKey("");
  clearError();
  route();
});
document.getElementById("key-button").addEventListener("click", askForKey);
document.addEventListener("unclip:need-key", askForKey);

const ROUTES = [
  [/^#\/create$/, (view) => renderCreate(view)],
  [/^#\/gallery$/, (view) => renderGallery(view)],
  [/^#\/jobs\/([\w-]+)$/, (view, m) => renderJob(view, m[1])],
  [/^#\/admin$/, (view) => renderAdmin(view)],
];

// Each visit renders into a view of its own: a page still loading when the user moves on
// fills its own detached view, and its errors are not shown on the page that replaced it.
let visit = 0;

async function route() {
  const hash = location.hash || "#/create";
  const mine = ++visit;
  const view = document.createElement("div");
  view.className = "view";
  page.replaceChildren(view);
  clearError();
  for (const [pattern, render] of ROUTES) {
    const match = hash.match(pattern);
    if (match) {
      try {
        await render(view, match);
      } catch (err) {
        if (mine === visit) showError(err);
      }
      return;
    }
  }
  showError(`no page ${hash}`);
}

window.addEventListener("hashchange", route);
window.addEventListener("unhandledrejection", (event) => showError(event.reason));
route();
