// The dashboard's only script: refreshes a page's main part, follows a log, signs in with a wallet.
// It writes text with textContent (never as HTML) and talks only to the node that served it.
"use strict";

function refreshing(main) {
  const seconds = Number(main.dataset.refresh);
  if (!seconds) return;
  setTimeout(async () => {
    try {
      const reply = await fetch(location.href, { credentials: "same-origin" });
      if (reply.redirected && new URL(reply.url).pathname.endsWith("/login")) { location.href = reply.url; return; }
      if (reply.ok) {
        const page = new DOMParser().parseFromString(await reply.text(), "text/html");
        const fresh = page.querySelector("main");
        if (fresh) {
          main.replaceChildren(...fresh.childNodes);
          if (fresh.dataset.refresh) main.dataset.refresh = fresh.dataset.refresh;
          else delete main.dataset.refresh;
        }
      }
    } catch (e) { /* the node is restarting: try again */ }
    refreshing(main);
  }, seconds * 1000);
}

async function following(pre) {
  const state = document.getElementById("log-state");
  let offset = 0;
  for (;;) {
    let reply;
    try {
      reply = await fetch(pre.dataset.log + "?offset=" + offset, { credentials: "same-origin" });
    } catch (e) {
      state.textContent = "the node does not answer; trying again";
      await new Promise((r) => setTimeout(r, 2000));
      continue;
    }
    if (!reply.ok) { state.textContent = (await reply.text()).trim(); return; }
    const part = await reply.json();
    if (part.data) pre.append(document.createTextNode(part.data));
    offset = part.offset;
    if (part.ended) { state.textContent = "the stage has ended: this is the whole log"; return; }
    state.textContent = "following the log…";
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function wallet() {
  const button = document.getElementById("wallet");
  if (!button || !window.ethereum) return;
  button.hidden = false;
  button.addEventListener("click", async () => {
    const text = document.getElementById("challenge").textContent;
    const [account] = await window.ethereum.request({ method: "eth_requestAccounts" });
    const hex = "0x" + Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
    document.getElementById("signature").value = await window.ethereum.request({
      method: "personal_sign", params: [hex, account],
    });
    document.getElementById("login").submit();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const main = document.querySelector("main");
  if (main) refreshing(main);
  const log = document.getElementById("log");
  if (log) following(log);
  wallet();
});
