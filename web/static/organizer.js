// The organizer's dashboard: create events and ticket types, follow the sale live (the sales
// stream, opened with a stream ticket, drives the figures and the chart), list orders by payment
// state and attendees, and export both as CSV.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const problem = $("problem");
  let eventID = "", closeLive = null, cursor = "", history = [];
  const fail = (e) => onsale.showProblem(problem, e);

  function shown() {
    const u = onsale.user();
    $("signin").hidden = !!u;
    $("app").hidden = !u;
    if (u) loadEvents();
  }

  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    onsale.showProblem(problem, null);
    try {
      const u = await onsale.login($("email").value, $("password").value);
      if (u.role !== "organizer") { onsale.logout(); throw new onsale.Problem({ title: "Not an organizer", detail: "this account is a " + u.role + " account" }, 403); }
      shown();
    } catch (e) { fail(e); }
  });

  async function loadEvents(select) {
    try {
      const r = await onsale.call("GET", "/v1/events?limit=100");
      const mine = r.data.items.filter((e) => e.organizer_id === onsale.user().id);
      const sel = $("event-select");
      sel.replaceChildren(...mine.map((e) => onsale.el("option", { value: e.id }, e.name + " · " + new Date(e.starts_at).toLocaleDateString())));
      if (select) sel.value = select;
      if (sel.value) choose(sel.value);
    } catch (e) { fail(e); }
  }
  $("event-select").addEventListener("change", (ev) => choose(ev.target.value));

  $("event-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    onsale.showProblem(problem, null);
    try {
      const r = await onsale.call("POST", "/v1/events", { name: $("ev-name").value, venue: $("ev-venue").value,
        starts_at: new Date($("ev-starts").value).toISOString() }, { "Idempotency-Key": onsale.idemKey() });
      await loadEvents(r.data.id);
      $("tt-name").focus();
    } catch (e) { fail(e); }
  });

  $("tt-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    onsale.showProblem(problem, null);
    if (!eventID) { fail({ title: "No event", detail: "create or choose an event first" }); return; }
    try {
      await onsale.call("POST", "/v1/events/" + eventID + "/ticket-types", { name: $("tt-name").value,
        price_cents: Number($("tt-price").value), currency: $("tt-currency").value, capacity: Number($("tt-capacity").value),
        max_per_order: Number($("tt-max").value) }, { "Idempotency-Key": onsale.idemKey() });
      $("tt-form").reset();
      $("tt-currency").value = "EUR";
      choose(eventID);
    } catch (e) { fail(e); }
  });

  function choose(id) {
    eventID = id;
    history = [];
    if (closeLive) closeLive();
    closeLive = onsale.stream("/v1/events/" + id + "/sales/events", { sales: showSales }, fail);
    loadOrders(true);
    loadAttendees();
  }

  function showSales(s) {
    const t = s.totals;
    const cur = (s.ticket_types[0] && s.ticket_types[0].currency) || "EUR";
    $("f-sold").textContent = t.sold;
    $("f-held").textContent = t.held;
    $("f-available").textContent = t.available;
    $("f-rate").textContent = (s.orders_per_second || 0).toFixed(1);
    $("f-revenue").textContent = onsale.money(t.revenue_cents, cur);
    $("f-checkedin").textContent = t.checked_in;
    $("f-pending").textContent = t.orders_pending;
    $("f-delayed").textContent = t.orders_delayed;
    $("f-failed").textContent = t.orders_failed;
    $("types-body").replaceChildren(...s.ticket_types.map((tt) => onsale.el("tr", {},
      onsale.el("td", {}, tt.name), onsale.el("td", {}, tt.sold), onsale.el("td", {}, tt.held), onsale.el("td", {}, tt.available),
      onsale.el("td", {}, onsale.money(tt.revenue_cents, tt.currency)), onsale.el("td", {}, tt.checked_in))));
    history.push({ at: Date.now(), sold: t.sold, held: t.held, capacity: t.capacity });
    if (history.length > 600) history.shift();
    draw();
  }

  // draw plots sold (blue) and held (orange) tickets against capacity over the samples seen.
  function draw() {
    const c = $("chart"), g = c.getContext("2d");
    g.clearRect(0, 0, c.width, c.height);
    if (history.length === 0) return;
    const cap = Math.max(1, ...history.map((h) => h.capacity));
    const t0 = history[0].at, t1 = Math.max(history[history.length - 1].at, t0 + 1);
    const x = (at) => 30 + (c.width - 40) * (at - t0) / (t1 - t0), y = (v) => c.height - 20 - (c.height - 30) * v / cap;
    g.strokeStyle = "#767676"; g.beginPath(); g.moveTo(30, 10); g.lineTo(30, c.height - 20); g.lineTo(c.width - 10, c.height - 20); g.stroke();
    g.fillStyle = "#1a1a1a"; g.font = "12px sans-serif"; g.fillText(String(cap), 2, 14); g.fillText("0", 18, c.height - 22);
    for (const [key, color] of [["sold", "#0b5cad"], ["held", "#b35900"]]) {
      g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
      history.forEach((h, i) => (i ? g.lineTo(x(h.at), y(h[key])) : g.moveTo(x(h.at), y(h[key]))));
      g.stroke();
    }
    g.fillStyle = "#0b5cad"; g.fillText("sold", c.width - 80, 14); g.fillStyle = "#b35900"; g.fillText("held", c.width - 40, 14);
  }

  // Each fresh load of the list replaces the one before: a load overtaken by a newer one (the
  // event chosen, then Refresh clicked at once) drops its answer instead of appending it twice.
  let ordersLoad = 0;
  async function loadOrders(fresh) {
    if (!eventID) return;
    const load = fresh ? ++ordersLoad : ordersLoad;
    if (fresh) { cursor = ""; $("orders-body").replaceChildren(); }
    const status = $("status-filter").value;
    let q = "?limit=50" + (status ? "&status=" + status : "") + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
    try {
      const r = await onsale.call("GET", "/v1/events/" + eventID + "/orders" + q);
      if (load !== ordersLoad) return;
      for (const o of r.data.items) {
        $("orders-body").append(onsale.el("tr", {}, onsale.el("td", { class: "code" }, o.id),
          onsale.el("td", {}, new Date(o.created_at).toLocaleTimeString()), onsale.el("td", {}, o.quantity),
          onsale.el("td", {}, onsale.money(o.amount_cents, o.currency)),
          onsale.el("td", { class: "status-" + o.payment_state }, o.payment_state + (o.status_detail ? " (" + o.status_detail + ")" : ""))));
      }
      cursor = r.data.next_cursor || "";
      $("more-orders").hidden = !cursor;
    } catch (e) { fail(e); }
  }
  $("status-filter").addEventListener("change", () => loadOrders(true));
  $("refresh-orders").addEventListener("click", () => loadOrders(true));
  $("more-orders").addEventListener("click", () => loadOrders(false));

  async function loadAttendees() {
    if (!eventID) return;
    try {
      const r = await onsale.call("GET", "/v1/events/" + eventID + "/attendees?limit=100");
      $("attendees-body").replaceChildren(...r.data.items.map((a) => onsale.el("tr", {},
        onsale.el("td", { class: "code" }, a.ticket_id), onsale.el("td", { class: "code" }, a.order_id),
        onsale.el("td", {}, a.checked_in_at ? new Date(a.checked_in_at).toLocaleString() : "not yet"))));
    } catch (e) { fail(e); }
  }
  $("refresh-attendees").addEventListener("click", loadAttendees);

  // download fetches a CSV export with the access token (a plain link could not send it) and
  // hands it to the browser as a file.
  async function download(what) {
    if (!eventID) return;
    try {
      const r = await onsale.call("GET", "/v1/events/" + eventID + "/" + what + "?format=csv");
      const url = URL.createObjectURL(new Blob([r.data], { type: "text/csv" }));
      const a = onsale.el("a", { href: url, download: what + "-" + eventID + ".csv" });
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) { fail(e); }
  }
  $("csv-orders").addEventListener("click", () => download("orders"));
  $("csv-attendees").addEventListener("click", () => download("attendees"));

  shown();
})();
