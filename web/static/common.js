// Shared by onsale's pages: calls to the API with the signed-in account's access token, problem
// documents shown as their title and detail, and event streams opened with a stream ticket
// (EventSource cannot send the Authorization header, and an access token never goes in a URL).
"use strict";

const onsale = (() => {
  const key = "onsale." + location.pathname;
  let session = JSON.parse(sessionStorage.getItem(key) || "null");

  // Problem is an API error: the problem document's title and detail.
  class Problem extends Error {
    constructor(doc, status) {
      super((doc && doc.title) || "Request failed (" + status + ")");
      this.title = (doc && doc.title) || "Request failed";
      this.detail = (doc && doc.detail) || "";
      this.type = (doc && doc.type) || "";
      this.status = status;
      this.doc = doc || {};
    }
  }

  async function call(method, path, body, headers) {
    const h = Object.assign({}, headers || {});
    if (session) h["Authorization"] = "Bearer " + session.access_token;
    if (body !== undefined) h["Content-Type"] = "application/json";
    let resp;
    try {
      resp = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new Problem({ title: "Network error", detail: "the server could not be reached; try again" }, 0);
    }
    const text = await resp.text();
    let data = null;
    if (text && (resp.headers.get("Content-Type") || "").includes("json")) data = JSON.parse(text);
    if (!resp.ok) throw new Problem(data, resp.status);
    return { status: resp.status, data: data === null ? text : data, headers: resp.headers };
  }

  // showProblem puts an error's title and detail in el (a live region), or clears it.
  function showProblem(el, err) {
    if (!err) { el.textContent = ""; return; }
    el.textContent = err.detail ? err.title + ": " + err.detail : err.title;
  }

  async function login(email, password) {
    session = null;
    const r = await call("POST", "/v1/auth/login", { email, password });
    session = r.data;
    const me = await call("GET", "/v1/me");
    session.user = me.data;
    sessionStorage.setItem(key, JSON.stringify(session));
    return session.user;
  }

  function logout() {
    if (session) call("POST", "/v1/auth/logout").catch(() => {});
    session = null;
    sessionStorage.removeItem(key);
  }

  // stream opens an event stream on path with a fresh stream ticket, and opens it again with a
  // new ticket when the server asks (reconnect) or the connection is lost. handlers maps event
  // names to functions of the parsed data. It returns a function that closes the stream.
  function stream(path, handlers, onError) {
    let es = null, closed = false, failures = 0;
    async function open() {
      if (closed) return;
      let ticket;
      try {
        ticket = (await call("POST", "/v1/auth/stream-tickets")).data.ticket;
      } catch (e) {
        if (onError) onError(e);
        if (e.status !== 401 && failures++ < 10) setTimeout(open, 2000);
        return;
      }
      const sep = path.includes("?") ? "&" : "?";
      es = new EventSource(path + sep + "ticket=" + encodeURIComponent(ticket));
      for (const [name, fn] of Object.entries(handlers)) {
        es.addEventListener(name, (ev) => { failures = 0; fn(JSON.parse(ev.data)); });
      }
      es.addEventListener("reconnect", () => { es.close(); open(); });
      es.onerror = () => {
        if (es.readyState === EventSource.CLOSED && !closed && failures++ < 10) setTimeout(open, 1000);
      };
    }
    open();
    return () => { closed = true; if (es) es.close(); };
  }

  function money(cents, currency) {
    try { return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(cents / 100); }
    catch (e) { return (cents / 100).toFixed(2) + " " + currency; }
  }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  function idemKey() {
    return (crypto.randomUUID && crypto.randomUUID()) || String(Date.now()) + Math.random().toString(16).slice(2);
  }

  return { call, showProblem, login, logout, stream, money, el, idemKey, Problem, user: () => session && session.user };
})();
