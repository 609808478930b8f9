// The storefront: events, ticket types with live availability, a hold with a countdown, checkout,
// the order's status as it changes (an event stream opened with a stream ticket), tickets as QR
// codes, and the waiting room's place and wait when the event has one.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const problem = $("problem");
  let current = null, pollTimer = null, countdownTimer = null, hold = null, pass = "", closeQueue = null, closeOrder = null;

  function fail(e) { onsale.showProblem(problem, e); }

  function signedIn() {
    const u = onsale.user();
    $("signin").hidden = !!u;
    $("who").hidden = !u;
    if (u) $("who").textContent = "Signed in as " + u.email + ".";
  }

  async function signin(register) {
    onsale.showProblem(problem, null);
    const email = $("email").value, password = $("password").value;
    try {
      if (register) await onsale.call("POST", "/v1/auth/register", { email, password, name: $("name").value || email });
      await onsale.login(email, password);
      signedIn();
    } catch (e) { fail(e); }
  }
  $("signin-form").addEventListener("submit", (ev) => { ev.preventDefault(); signin(false); });
  $("register").addEventListener("click", () => signin(true));

  async function loadEvents() {
    try {
      const r = await onsale.call("GET", "/v1/events?limit=50");
      const list = $("event-list");
      list.replaceChildren();
      if (!r.data.items.length) list.append(onsale.el("p", { class: "muted" }, "No events on sale yet."));
      for (const ev of r.data.items) {
        list.append(onsale.el("div", { class: "card" },
          onsale.el("strong", {}, ev.name), " · " + ev.venue + " · " + new Date(ev.starts_at).toLocaleString(), " ",
          onsale.el("button", { class: "secondary", "data-event": ev.id, onclick: () => openEvent(ev.id) }, "Tickets for " + ev.name)));
      }
    } catch (e) { fail(e); }
  }

  async function openEvent(id) {
    onsale.showProblem(problem, null);
    try {
      const r = await onsale.call("GET", "/v1/events/" + id);
      current = r.data;
      $("event").hidden = false;
      $("event-h").textContent = current.name;
      $("event-info").textContent = current.venue + " · " + new Date(current.starts_at).toLocaleString();
      renderTypes();
      clearInterval(pollTimer);
      pollTimer = setInterval(refreshAvailability, 2000);
      refreshAvailability();
      $("event").scrollIntoView();
    } catch (e) { fail(e); }
  }

  function renderTypes() {
    const box = $("ticket-types");
    box.replaceChildren();
    for (const tt of current.ticket_types) {
      const qty = onsale.el("select", { id: "qty-" + tt.id });
      for (let i = 1; i <= tt.max_per_order; i++) qty.append(onsale.el("option", { value: i }, i));
      box.append(onsale.el("div", { class: "card" },
        onsale.el("strong", {}, tt.name), " · " + onsale.money(tt.price_cents, tt.currency), " · ",
        onsale.el("span", { id: "avail-" + tt.id, "aria-live": "polite" }, ""),
        onsale.el("label", { for: "qty-" + tt.id }, "How many"), qty,
        onsale.el("button", { "data-hold": tt.id, onclick: () => holdTickets(tt) }, "Hold " + tt.name)));
    }
  }

  async function refreshAvailability() {
    if (!current) return;
    try {
      const r = await onsale.call("GET", "/v1/events/" + current.id + "/availability");
      for (const s of r.data.ticket_types) {
        const span = $("avail-" + s.ticket_type_id);
        if (span) span.textContent = s.available > 0 ? s.available + " available" : "sold out";
      }
    } catch (e) { /* availability is refreshed again in two seconds */ }
  }

  async function holdTickets(tt) {
    onsale.showProblem(problem, null);
    if (!onsale.user()) { fail({ title: "Sign in first", detail: "sign in or create an account to hold tickets" }); $("email").focus(); return; }
    const quantity = Number($("qty-" + tt.id).value);
    const headers = { "Idempotency-Key": onsale.idemKey() };
    if (pass) headers["Queue-Pass"] = pass;
    try {
      const r = await onsale.call("POST", "/v1/holds", { ticket_type_id: tt.id, quantity }, headers);
      showHold(r.data, tt);
    } catch (e) {
      if (e.type.endsWith("/queue-pass-required") || e.type.endsWith("/queue-pass-expired")) { joinQueue(tt); return; }
      fail(e);
    }
  }

  // joinQueue takes a place in the event's waiting room and follows it until admitted; then the
  // hold is tried again with the pass.
  async function joinQueue(tt) {
    $("queue").hidden = false;
    $("queue-status").textContent = "Joining the waiting room…";
    try {
      const r = await onsale.call("POST", "/v1/events/" + current.id + "/queue");
      showPlace(r.data, tt);
      if (r.data.status === "admitted") return;
      if (closeQueue) closeQueue();
      closeQueue = onsale.stream("/v1/events/" + current.id + "/queue/me/events", { position: (q) => showPlace(q, tt) }, fail);
    } catch (e) { fail(e); }
  }

  function showPlace(q, tt) {
    if (q.status === "admitted" && q.pass) {
      pass = q.pass;
      $("queue-status").textContent = "It is your turn: holding your tickets…";
      if (closeQueue) { closeQueue(); closeQueue = null; }
      holdTickets(tt);
      return;
    }
    const wait = q.estimated_wait_seconds == null ? "unknown" : Math.ceil(q.estimated_wait_seconds / 60) + " min";
    $("queue-status").textContent = "You are number " + (q.place || "?") + " in line, " + q.ahead + " ahead of you. Estimated wait: " + wait + (q.paused ? " (paused by the organizer)" : "") + ".";
  }

  function showHold(h, tt) {
    hold = h;
    $("queue").hidden = true;
    $("hold").hidden = false;
    $("hold-info").textContent = h.quantity + " × " + tt.name + " at " + onsale.money(h.unit_price_cents, h.currency) + " each.";
    $("checkout").disabled = false;
    clearInterval(countdownTimer);
    const tick = () => {
      const left = Math.max(0, Math.round((new Date(h.expires_at) - Date.now()) / 1000));
      $("countdown").textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
      if (left === 0) { clearInterval(countdownTimer); $("checkout").disabled = true; fail({ title: "Hold expired", detail: "the tickets went back on sale; hold them again" }); }
    };
    tick();
    countdownTimer = setInterval(tick, 1000);
    $("checkout").focus();
  }

  $("release").addEventListener("click", async () => {
    if (!hold) return;
    try { await onsale.call("DELETE", "/v1/holds/" + encodeURIComponent(hold.id)); } catch (e) { fail(e); }
    clearInterval(countdownTimer);
    $("hold").hidden = true;
    hold = null;
  });

  $("checkout").addEventListener("click", async () => {
    onsale.showProblem(problem, null);
    $("checkout").disabled = true;
    try {
      const r = await onsale.call("POST", "/v1/orders", { hold_id: hold.id }, { "Idempotency-Key": "checkout-" + hold.id });
      clearInterval(countdownTimer);
      $("hold").hidden = true;
      followOrder(r.data);
    } catch (e) { $("checkout").disabled = false; fail(e); }
  });

  function followOrder(o) {
    $("order").hidden = false;
    showStatus(o);
    if (closeOrder) closeOrder();
    closeOrder = onsale.stream("/v1/orders/" + o.id + "/events", {
      status: (ev) => {
        showStatus(ev);
        if (ev.status === "confirmed" || ev.status === "failed") {
          closeOrder(); closeOrder = null;
          if (ev.status === "confirmed") showTickets(o.id);
        }
      },
    }, fail);
    $("order").scrollIntoView();
  }

  function showStatus(o) {
    const s = $("order-status");
    s.textContent = o.status;
    s.className = "status-" + o.status;
    $("order-detail").textContent = o.status_detail || "";
  }

  async function showTickets(orderID) {
    try {
      const r = await onsale.call("GET", "/v1/orders/" + orderID);
      const box = $("tickets");
      box.replaceChildren();
      r.data.tickets.forEach((t, i) => {
        const qr = qrcode(0, "M");
        qr.addData(t.code);
        qr.make();
        const fig = onsale.el("figure", { class: "ticket" });
        fig.innerHTML = qr.createSvgTag({ cellSize: 4, margin: 4, scalable: true, alt: "QR code of ticket " + (i + 1) });
        fig.append(onsale.el("figcaption", {}, "Ticket " + (i + 1)), onsale.el("p", { class: "code" }, t.code));
        box.append(fig);
      });
    } catch (e) { fail(e); }
  }

  signedIn();
  loadEvents();
})();
