// The API token of the page, when the server has one (--api-token-file).
//
// Loaded before app.js. Every same-origin request of the page carries
// `Authorization: Bearer <token>` once a token is known; the token is kept in
// sessionStorage, so it lasts as long as the tab. A 401 answer shows a small form asking
// for the token once; after it is given the page reloads its view.
"use strict";

(function () {
  const KEY = "faultline.api-token";
  const plainFetch = window.fetch.bind(window);

  function token() {
    try { return sessionStorage.getItem(KEY) || ""; } catch (_) { return ""; }
  }

  function sameOrigin(input) {
    try {
      const url = new URL(typeof input === "string" ? input : input.url, location.href);
      return url.origin === location.origin;
    } catch (_) {
      return false;
    }
  }

  let asking = null;

  // Shows the form (once) and resolves when a token has been stored.
  function askForToken(refused) {
    if (asking) return asking;
    asking = new Promise((resolve) => {
      const box = document.createElement("form");
      box.id = "token-form";
      box.setAttribute("aria-label", "API token");
      Object.assign(box.style, {
        position: "fixed", top: "4rem", left: "50%", transform: "translateX(-50%)",
        zIndex: "10", padding: "1rem 1.25rem", background: "#fff", color: "#111",
        border: "1px solid #888", borderRadius: "6px", boxShadow: "0 4px 16px rgba(0,0,0,.25)",
        display: "flex", flexDirection: "column", gap: ".5rem", minWidth: "20rem",
      });
      const label = document.createElement("label");
      label.textContent = refused
        ? "That token was refused. API token:"
        : "This server needs an API token:";
      label.htmlFor = "token-input";
      const input = document.createElement("input");
      input.id = "token-input";
      input.type = "password";
      input.autocomplete = "off";
      input.required = true;
      const button = document.createElement("button");
      button.type = "submit";
      button.textContent = "Use token";
      const note = document.createElement("small");
      note.textContent = "Kept in this tab only (sessionStorage).";
      box.append(label, input, button, note);
      box.addEventListener("submit", (e) => {
        e.preventDefault();
        const value = input.value.trim();
        if (!value) return;
        try { sessionStorage.setItem(KEY, value); } catch (_) { /* private mode: per request */ }
        box.remove();
        asking = null;
        resolve(value);
      });
      document.body.append(box);
      input.focus();
    });
    return asking;
  }

  window.fetch = async function (input, init) {
    if (!sameOrigin(input)) return plainFetch(input, init);
    for (let attempt = 0; ; attempt++) {
      const opts = Object.assign({}, init || {});
      const headers = new Headers(opts.headers || (typeof input === "string" ? undefined : input.headers));
      const t = token();
      if (t) headers.set("authorization", "Bearer " + t);
      opts.headers = headers;
      const resp = await plainFetch(input, opts);
      if (resp.status !== 401 || attempt >= 5) return resp;
      // Refused: ask (saying so when a token was sent), then try again.
      await askForToken(Boolean(t));
    }
  };
})();
