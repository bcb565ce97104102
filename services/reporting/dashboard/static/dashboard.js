// Live pages: the server says "changed" over server-sent events; the page fetches its own
// fragment again and swaps it in. No reload, no framework.
(() => {
  const page = document.body.dataset.page;
  const content = document.getElementById("content");
  const live = document.getElementById("live");
  if (!page || page === "error") {
    live.textContent = "";
    return;
  }
  let busy = false;
  let again = false;

  function say(text, ok) {
    live.textContent = `${text} · ${new Date().toLocaleTimeString()}`;
    live.className = ok ? "live ok" : "live bad";
  }

  async function refresh() {
    if (content.querySelector('[data-page="error"]')) return; // a bad request stays as it is
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      const response = await fetch(`/fragment/${page}${location.search}`, { cache: "no-store" });
      if (response.ok) {
        content.innerHTML = await response.text();
        say("live, updated", true);
      } else {
        say(`refresh failed (${response.status})`, false);
      }
    } catch (error) {
      say("offline", false);
    }
    busy = false;
    if (again) {
      again = false;
      refresh();
    }
  }

  const events = new EventSource("/events");
  let connected = false;
  events.addEventListener("open", () => {
    // After a reconnection, changes may have been missed: fetch once.
    if (connected) refresh();
    connected = true;
    say("live", true);
  });
  events.addEventListener("changed", refresh);
  events.addEventListener("error", () => say("reconnecting", false));
})();
