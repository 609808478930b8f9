// The door: one code in, one big answer out: admitted, already checked in (and when), or invalid.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const problem = $("problem");

  function shown() {
    const u = onsale.user();
    $("signin").hidden = !!u;
    $("scan").hidden = !u;
    if (u) $("code").focus();
  }

  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    onsale.showProblem(problem, null);
    try {
      const u = await onsale.login($("email").value, $("password").value);
      if (u.role !== "staff") { onsale.logout(); throw new onsale.Problem({ title: "Not door staff", detail: "this account is a " + u.role + " account" }, 403); }
      shown();
    } catch (e) { onsale.showProblem(problem, e); }
  });

  function answer(kind, text, small) {
    const a = $("answer");
    a.className = "answer " + kind;
    a.replaceChildren(text, onsale.el("small", {}, small || ""));
  }

  $("scan-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    onsale.showProblem(problem, null);
    const code = $("code").value.trim();
    try {
      await onsale.call("POST", "/v1/checkins", { code });
      answer("admitted", "Admitted", "Welcome in.");
    } catch (e) {
      if (e.type.endsWith("/already-checked-in")) {
        answer("already", "Already checked in", "at " + new Date(e.doc.checked_in_at).toLocaleString() + " — do not admit");
      } else if (e.status === 400 || e.status === 404 || e.status === 422) {
        answer("invalid", "Invalid ticket", e.detail || e.title);
      } else {
        $("answer").textContent = "";
        onsale.showProblem(problem, e);
      }
    }
    $("code").select();
  });

  shown();
})();
