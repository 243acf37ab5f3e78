// stopcaster dashboard: live refresh with a pause control, and the confirmed actions (replay,
// cancel, pause and resume an account). Everything from the server is inserted as text (textContent) or as the server's own
// escaped HTML parsed into inert nodes (DOMParser); nothing is evaluated.
"use strict";
(function () {
  const body = document.body;
  const period = Number(body.dataset.refresh || 0) * 1000;
  const toggle = document.getElementById("live-toggle");
  const status = document.getElementById("live-status");
  const key = "stopcaster.live.paused";
  let paused = localStorage.getItem(key) === "1";
  let busy = false;

  function showPaused() {
    if (!toggle) return;
    toggle.setAttribute("aria-pressed", paused ? "true" : "false");
    toggle.textContent = paused ? "Resume live" : "Pause live";
    if (paused) status.textContent = "paused";
  }

  function clock() {
    return new Date().toISOString().slice(11, 19) + " UTC";
  }

  // The user is in the middle of something on the page: leave it alone.
  function interacting() {
    const live = document.getElementById("live");
    if (document.querySelector("dialog[open]")) return true;
    if (live.querySelector("input[type=checkbox]:checked")) return true;
    // A filter typed or chosen but not yet submitted.
    for (const input of live.querySelectorAll("input:not([type=checkbox])")) {
      if (input.value !== input.defaultValue) return true;
    }
    for (const option of live.querySelectorAll("select option")) {
      if (option.selected !== option.defaultSelected) return true;
    }
    const active = document.activeElement;
    return active && live.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName);
  }

  // Each refresh takes a number; only the latest may replace the page, so a refresh started
  // before an action never puts back what the action changed.
  let generation = 0;

  async function refresh(force) {
    if (!force && (paused || busy || document.hidden || interacting())) return;
    const mine = ++generation;
    busy = true;
    try {
      const response = await fetch(location.href, { headers: { "Accept": "text/html" }, cache: "no-store" });
      const text = await response.text();
      if (mine !== generation) return;
      const doc = new DOMParser().parseFromString(text, "text/html");
      const fresh = doc.getElementById("live");
      if (fresh && !interacting() && (force || !paused)) {
        document.getElementById("live").replaceChildren(...Array.from(fresh.childNodes).map((n) => document.adoptNode(n)));
      }
      if (status) status.textContent = (response.ok ? "updated " : "HTTP " + response.status + " at ") + clock();
    } catch (e) {
      if (status) status.textContent = "refresh failed " + clock();
    } finally {
      if (mine === generation) busy = false;
    }
  }

  if (toggle && period > 0) {
    showPaused();
    toggle.addEventListener("click", () => {
      paused = !paused;
      localStorage.setItem(key, paused ? "1" : "0");
      showPaused();
      if (!paused) { status.textContent = ""; refresh(); }
    });
    setInterval(refresh, period);
  }

  // ---- confirmation ---------------------------------------------------------------------
  function confirmAction(title, text, items, okLabel) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-title").textContent = title;
    document.getElementById("confirm-text").textContent = text;
    const list = document.getElementById("confirm-list");
    list.replaceChildren();
    for (const item of items.slice(0, 200)) {
      const li = document.createElement("li");
      li.textContent = item;
      list.appendChild(li);
    }
    if (items.length > 200) {
      const li = document.createElement("li");
      li.textContent = "… and " + (items.length - 200) + " more";
      list.appendChild(li);
    }
    document.getElementById("confirm-ok").textContent = okLabel;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
    });
  }

  function showResult(text, failed) {
    const box = document.getElementById("action-result");
    if (!box) return;
    box.hidden = false;
    box.classList.toggle("failed", !!failed);
    box.textContent = text;
  }

  async function post(url, payload) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: payload === undefined ? "{}" : JSON.stringify(payload),
      cache: "no-store",
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = { error: "HTTP " + response.status }; }
    return { ok: response.ok, status: response.status, data };
  }

  function selectedBoxes() {
    return Array.from(document.querySelectorAll("#dead-letters input[name=job]:checked"));
  }

  function updateSelection() {
    const button = document.getElementById("replay-selected");
    if (!button) return;
    const n = selectedBoxes().length;
    button.disabled = n === 0;
    button.textContent = n ? "Replay " + n + " selected…" : "Replay selected…";
  }

  document.addEventListener("change", (event) => {
    const target = event.target;
    if (target.id === "select-all") {
      for (const box of document.querySelectorAll("#dead-letters input[name=job]")) box.checked = target.checked;
    }
    if (target.closest && target.closest("#dead-letters")) updateSelection();
  });

  // The studio a button or box acts on, as its row (or the job's page) shows it: read from the
  // page rather than repeated in an attribute, so each value is rendered once.
  function casterOf(element) {
    const row = element.closest("tr");
    const cell = row ? row.querySelector(".caster") : document.getElementById("job-caster");
    return cell ? cell.textContent.trim() : "";
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest ? event.target.closest("button[data-replay], button[data-cancel], button[data-cancel-matching]") : null;
    if (!button) return;
    if (button.dataset.cancelMatching) {
      // Chosen on the server by the list's filter, not by the rows of this page.
      const count = button.dataset.count;
      const filter = {};
      for (const [k, v] of new URLSearchParams(window.location.search)) if (v.trim() && k !== "after" && k !== "limit") filter[k] = v;
      const ok = await confirmAction("Cancel " + count + " job(s)?", "The " + count + " jobs matching the filter that no call has been made for become cancelled and are never called.", Object.entries(filter).map(([k, v]) => k + " = " + v), "Cancel " + count);
      if (!ok) return;
      button.disabled = true;
      const r = await post("/api/jobs/cancel", { filter });
      showResult(r.ok ? "Cancelled " + r.data.cancelled + "; " + r.data.not_cancelled + " matching had gone too far or ended." : "Not cancelled: " + (r.data.error || ("HTTP " + r.status)), !r.ok);
      refreshSoon();
      return;
    }
    if (button.dataset.cancel) {
      const id = button.dataset.cancel;
      const ok = await confirmAction("Cancel this stop?", "The job becomes cancelled and is never called.", [id + "  " + casterOf(button)], "Cancel the stop");
      if (!ok) return;
      const r = await post("/api/jobs/" + encodeURIComponent(id) + "/cancel");
      showResult(r.ok ? "Cancelled " + id + "." : "Not cancelled: " + (r.data.error || ("HTTP " + r.status)), !r.ok);
      refreshSoon();
      return;
    }
    const mode = button.dataset.replay;
    let boxes;
    let payload;
    if (mode === "selected") {
      boxes = selectedBoxes();
      payload = { job_ids: boxes.map((b) => b.value) };
    } else if (mode === "matching") {
      // Chosen on the server by the page's filter: the rows shown may be only the first.
      boxes = Array.from(document.querySelectorAll("#dead-letters input[name=job]"));
      const filter = {};
      for (const [k, v] of new URLSearchParams(window.location.search)) if (v.trim()) filter[k] = v;
      payload = { filter };
    } else {
      boxes = Array.from(document.querySelectorAll("#dead-letters input[name=job]"));
      payload = { all: true };
    }
    if (payload.job_ids && payload.job_ids.length === 0) return;
    const count = mode === "selected" ? String(boxes.length) : (button.dataset.count || document.getElementById("dead-count").textContent);
    const more = Number(count) > boxes.length ? ["… and " + (Number(count) - boxes.length) + " more"] : [];
    const ok = await confirmAction(
      "Replay " + count + " dead letter(s)?",
      mode === "all"
        ? "Every message in the dead-letter queue goes back to the work queue; failed jobs are reopened with a fresh attempt budget."
        : mode === "matching"
          ? "The " + count + " dead letters matching the filter go back to the work queue; failed jobs are reopened with a fresh attempt budget."
          : "These jobs go back to the work queue; failed jobs are reopened with a fresh attempt budget.",
      boxes.slice(0, 50).map((b) => b.value + "  " + casterOf(b)).concat(boxes.length > 50 ? ["… and " + (Number(count) - 50) + " more"] : more),
      "Replay " + count);
    if (!ok) return;
    button.disabled = true;
    const r = await post("/api/dead-letters/replay", payload);
    if (r.ok) {
      const lines = r.data.lines.slice(0, 50);
      if (r.data.lines.length > 50) lines.push("… and " + (r.data.lines.length - 50) + " more");
      if (r.data.missing.length) lines.push("not in the dead-letter queue (already replayed?): " + r.data.missing.join(", "));
      if (r.data.without_job_id) lines.push(r.data.without_job_id + " dead letter(s) without a job id left in place");
      showResult("Replayed " + r.data.replayed.length + ".\n" + lines.join("\n"), r.data.missing.length > 0);
    } else {
      showResult("Replay failed: " + (r.data.error || ("HTTP " + r.status)), true);
    }
    for (const box of selectedBoxes()) box.checked = false;
    refreshSoon();
  });

  // ---- operators' pauses -----------------------------------------------------------------
  document.addEventListener("click", async (event) => {
    const target = event.target;
    if (!target.closest) return;
    const pauseButton = target.closest("#pause-button");
    const resumeButton = target.closest("button[data-resume]");
    if (pauseButton) {
      const account = document.getElementById("pause-account").value;
      const reason = document.getElementById("pause-reason").value.trim();
      const until = document.getElementById("pause-until").value.trim();
      if (!reason) { showResult("A pause needs a reason.", true); return; }
      const ok = await confirmAction("Pause account " + account + "?",
        "Every worker stops calling for this account within a second; its jobs wait with their attempt budget untouched" + (until ? ", until " + until + "." : ", until resumed."),
        [reason], "Pause " + account);
      if (!ok) return;
      const payload = { reason: reason };
      if (until) payload.until = until;
      const r = await post("/api/accounts/" + encodeURIComponent(account) + "/pause", payload);
      showResult(r.ok ? "Paused " + account + "." : "Not paused: " + (r.data.error || ("HTTP " + r.status)), !r.ok);
      if (r.ok) {
        document.getElementById("pause-reason").value = "";
        document.getElementById("pause-until").value = "";
      }
      refreshSoon();
    } else if (resumeButton) {
      const account = resumeButton.dataset.resume;
      const ok = await confirmAction("Resume account " + account + "?", "Every worker calls for this account again within a second.", [], "Resume " + account);
      if (!ok) return;
      const r = await post("/api/accounts/" + encodeURIComponent(account) + "/resume");
      showResult(r.ok && r.data.resumed ? "Resumed " + account + "." : "Not resumed: " + (r.data.error || ("HTTP " + r.status)), !(r.ok && r.data.resumed));
      refreshSoon();
    }
  });

  // After an action: whatever refresh is under way is outdated; show the page as it is now.
  function refreshSoon() {
    generation++;
    setTimeout(() => refresh(true), 200);
  }
})();
