// youxu status page: live view from /live (server-sent events), writes through /api/v1/ with a token.
"use strict";

const T = {
  zh: { title: "有序充电", offline: "未连接", live: "实时", online: "在线", safe_mode: "安全模式", load: "负荷", total: "变压器总负荷",
    limit: "限额", households: "居民负荷", evs: "充电负荷", dispatch: "调度时段", phases: "各相负荷", piles: "充电桩",
    pile: "桩", status: "状态", power: "功率 kW", session: "会话", departure: "离开", energy: "已充 / 需求 kWh",
    override: "干预", actions: "操作", commands: "调度指令", alarms: "最近事件", login: "登录 (预约与干预)",
    signin: "登录", signout: "退出", booking: "预约充电", energy_wanted: "需求电量 kWh", priority: "优先级",
    normal: "普通", urgent: "紧急", book: "提交预约", updated: "更新于", none: "无", in_force: "执行中",
    pause: "暂停", resume: "恢复", minutes: "分钟", token_ok: "已登录", token_bad: "令牌无效",
    token_read: "只读令牌：不能预约或干预", booked: "预约已受理", refused: "被拒绝", available: "空闲",
    connected: "已连接", charging: "充电中", fault: "故障", unknown: "未知" },
  en: { title: "Ordered charging", offline: "disconnected", live: "live", online: "online", safe_mode: "safe mode", load: "Load",
    total: "Transformer load", limit: "Limit", households: "Households", evs: "EVs", dispatch: "Dispatch window",
    phases: "Phases", piles: "Piles", pile: "Pile", status: "Status", power: "Power kW", session: "Session",
    departure: "Departure", energy: "Energy so far / wanted kWh", override: "Override", actions: "Actions",
    commands: "Dispatch commands", alarms: "Recent events", login: "Log in (bookings and overrides)",
    signin: "Log in", signout: "Log out", booking: "Book a charge", energy_wanted: "Energy wanted kWh",
    priority: "Priority", normal: "normal", urgent: "urgent", book: "Book", updated: "Updated", none: "none",
    in_force: "in force", pause: "pause", resume: "resume", minutes: "min", token_ok: "logged in",
    token_bad: "token refused", token_read: "read-only token: no bookings or overrides", booked: "booking accepted",
    refused: "refused", available: "available", connected: "connected", charging: "charging", fault: "fault",
    unknown: "unknown" },
};
let lang = localStorage.getItem("youxu.lang") || (navigator.language.startsWith("zh") ? "zh" : "en");
let token = sessionStorage.getItem("youxu.token") || "";
let history = [];
let last = null;
let streaming = false;
const $ = (id) => document.getElementById(id);
const t = (k) => (T[lang] && T[lang][k]) || k;
const num = (x, d = 1) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" }) : "–");

function translate() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  $("lang").textContent = lang === "zh" ? "EN" : "中文";
  $("conn").textContent = t(streaming ? "live" : "offline");
  if (last) render(last);
}

// ---- chart: households and EVs stacked, the limit, the limits ahead (dispatch windows shaded) ----
function chart(status) {
  // the past (what the loop published) on the left 70 %, the limits ahead on the right 30 %, each on its own time scale
  const svg = $("chart"), W = 600, H = 220, P = 4, SPLIT = 0.7 * W;
  const pts = history.slice(-1440);
  const ahead = (status && status.limits_ahead) || [];
  if (!pts.length) { svg.innerHTML = ""; return; }
  const t0 = pts[0][0], tNow = pts[pts.length - 1][0];
  const tEnd = ahead.length ? Date.parse(ahead[ahead.length - 1].at) / 1000 : tNow + 1;
  const past = Math.max(tNow - t0, 1), fut = Math.max(tEnd - tNow, 1);
  let ymax = 1;
  for (const p of pts) ymax = Math.max(ymax, p[3] || 0, p[4] !== null && isFinite(p[4]) ? p[4] : 0);
  for (const a of ahead) if (a.limit_kw !== null) ymax = Math.max(ymax, a.limit_kw);
  ymax *= 1.1;
  const x = (ts) => (ts <= tNow ? P + (SPLIT - P) * (ts - t0) / past : SPLIT + (W - P - SPLIT) * (ts - tNow) / fut);
  const y = (v) => H - P - (H - 2 * P) * Math.max(0, v) / ymax;
  const xy = (ts, v) => `${x(ts).toFixed(1)},${y(v).toFixed(1)}`;
  const area = (top, bot) => "M" + pts.map((p) => xy(p[0], top(p))).join("L") + "L" +
    pts.slice().reverse().map((p) => xy(p[0], bot(p))).join("L") + "Z";
  let s = "";
  for (let i = 0; i < ahead.length; i++) {  // dispatch windows ahead, shaded
    if (!ahead[i].dispatch) continue;
    const a = x(Math.max(tNow, Date.parse(ahead[i].at) / 1000));
    const b = i + 1 < ahead.length ? x(Date.parse(ahead[i + 1].at) / 1000) : W - P;
    s += `<rect class="dispatch" x="${a.toFixed(1)}" y="${P}" width="${Math.max(b - a, 1).toFixed(1)}" height="${H - 2 * P}" fill="var(--disp)"/>`;
  }
  s += `<path d="${area((p) => p[1] || 0, () => 0)}" fill="var(--base)"/>`;
  s += `<path d="${area((p) => (p[1] || 0) + (p[2] || 0), (p) => p[1] || 0)}" fill="var(--ev)"/>`;
  const lim = pts.filter((p) => p[4] !== null && isFinite(p[4])).map((p) => xy(p[0], p[4]));
  if (lim.length) s += `<polyline points="${lim.join(" ")}" fill="none" stroke="var(--lim)" stroke-width="2"/>`;
  const next = ahead.filter((a) => a.limit_kw !== null);
  if (next.length) {
    const steps = [];
    next.forEach((a, i) => {
      const ta = Math.max(tNow, Date.parse(a.at) / 1000);
      const tb = i + 1 < next.length ? Date.parse(next[i + 1].at) / 1000 : tEnd;
      steps.push(xy(ta, a.limit_kw), xy(tb, a.limit_kw));
    });
    s += `<polyline points="${steps.join(" ")}" fill="none" stroke="var(--lim)" stroke-width="2" stroke-dasharray="5,4"/>`;
  }
  s += `<line x1="${SPLIT}" x2="${SPLIT}" y1="${P}" y2="${H - P}" stroke="#556" stroke-width="1"/>`;
  const hm = (ts) => new Date(ts * 1000).toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB", { hour: "2-digit", minute: "2-digit" });
  s += `<text x="${P + 2}" y="14" font-size="12" fill="#556">${num(ymax, 0)} kW</text>`;
  s += `<text x="${P + 2}" y="${H - 8}" font-size="11" fill="#556">${hm(t0)}</text>`;
  s += `<text x="${SPLIT + 3}" y="${H - 8}" font-size="11" fill="#556">${hm(tNow)}</text>`;
  s += `<text x="${W - P - 34}" y="${H - 8}" font-size="11" fill="#556">${hm(tEnd)}</text>`;
  svg.innerHTML = s;
}

function phases(status) {
  const lim = (status.transformer && status.transformer.phase_limit_kw) || {};
  let h = "";
  for (const ph of ["L1", "L2", "L3"]) {
    const v = status.phase_kw ? status.phase_kw[ph] : null, L = lim[ph];
    const scale = Math.max(L || 0, v || 0, 1) * 1.15;
    const w = v === null ? 0 : 100 * Math.max(0, v) / scale;
    h += `<div class="phase" data-phase="${ph}"><span>${ph}: <b>${num(v)}</b>${L ? " / " + num(L, 0) : ""} kW</span>` +
      `<div class="bar"><div class="fill${L && v > L ? " over" : ""}" style="width:${w.toFixed(1)}%"></div>` +
      (L ? `<div class="mark" style="left:${(100 * L / scale).toFixed(1)}%"></div>` : "") + `</div></div>`;
  }
  $("phase-bars").innerHTML = h;
}

function piles(list) {
  const rows = list.map((p) => {
    const o = p.override ? `${t(p.override.action)} → ${clock(p.override.until)}` : "";
    return `<tr data-pile="${esc(p.pile_id)}"><td>${esc(p.pile_id)}</td>` +
      `<td class="st-${esc(p.status)}">${esc(t(p.status))}${p.urgent ? " ⚡" : ""}</td>` +
      `<td class="num power">${num(p.power_kw)}</td><td class="session">${esc(p.session || "")}</td>` +
      `<td class="departure">${p.departure ? clock(p.departure) : ""}</td>` +
      `<td class="num energy">${p.session ? num(p.energy_kwh) + " / " + num(p.energy_wanted_kwh) : ""}</td>` +
      `<td>${p.v2g ? "✓" : ""}</td><td class="override">${esc(o)}</td>` +
      `<td class="write"><button data-act="pause">${t("pause")}</button><button data-act="urgent">${t("urgent")}</button>` +
      `<button data-act="resume">${t("resume")}</button></td></tr>`;
  });
  $("pile-rows").innerHTML = rows.join("");
  const sel = $("book-pile"), keep = sel.value;
  if (sel.options.length !== list.length) {
    sel.innerHTML = list.map((p) => `<option>${esc(p.pile_id)}</option>`).join("");
    if (keep) sel.value = keep;
  }
}

function commands(list) {
  const shown = list.filter((c) => c.in_force).concat(list.filter((c) => !c.in_force)).slice(0, 10);
  $("command-list").innerHTML = shown.length ? shown.map((c) => {
    const ack = c.acks && c.acks.length ? c.acks[c.acks.length - 1] : null;
    const p = c.command && c.command.periods && c.command.periods[0];
    const what = p ? (p.import_max_kw !== undefined ? `≤ ${p.import_max_kw} kW` : p.setpoint_kw !== undefined ? `→ ${p.setpoint_kw} kW` : "") : "";
    return `<li data-command="${esc(c.command_id)}">${c.in_force ? "<b>" + t("in_force") + "</b> " : ""}${esc(c.type || "")} ${esc(what)} ` +
      `<small>${esc(c.command_id)}</small> ${ack ? esc(ack.status) + (ack.reason ? " " + esc(ack.reason) : "") : ""}</li>`;
  }).join("") : `<li>${t("none")}</li>`;
}

function alarms(list) {
  const routine = /^(session_|car_full|booking_accepted|pile_override)|(_restored|_cleared|_recovered)$/;
  $("alarm-list").innerHTML = list.length ? list.slice().reverse().map((e) =>
    `<li class="${routine.test(e.kind) ? "" : "warn"}"><time>${clock(e.at)}</time>${esc(e.message)}</li>`).join("")
    : `<li>${t("none")}</li>`;
}

function render(v) {
  last = v;
  const s = v.status;
  if (s) {
    $("site-id").textContent = s.site_id || "";
    $("total-kw").textContent = num(s.total_kw);
    $("limit-kw").textContent = num(s.limit_kw);
    $("base-kw").textContent = num(s.base_kw);
    $("ev-kw").textContent = num(s.ev_kw);
    $("state").textContent = t(s.state);
    $("state").className = "badge " + s.state;
    $("updated").textContent = clock(s.at);
    $("version").textContent = s.version;
    phases(s);
    chart(s);
  }
  piles(v.piles || []);
  commands(v.commands || []);
  alarms(v.alarms || []);
}

function connect() {
  const es = new EventSource("/live");
  es.addEventListener("view", (m) => { const v = JSON.parse(m.data); history = v.history || []; render(v); });
  es.addEventListener("tick", (m) => {
    const v = JSON.parse(m.data);
    if (v.point) { history.push(v.point); if (history.length > 1440) history.shift(); }
    render(v);
  });
  es.onopen = () => { streaming = true; $("conn").className = "badge"; $("conn").textContent = t("live"); };
  es.onerror = () => { streaming = false; $("conn").className = "badge off"; $("conn").textContent = t("offline"); };
}

// ---- writes -----------------------------------------------------------------------------------------
async function api(method, path, body) {
  const r = await fetch("/api/v1" + path, { method, headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  return { status: r.status, data, role: r.headers.get("X-Token-Role") };
}

function say(id, text, ok) { const el = $(id); el.textContent = text; el.className = "msg " + (ok ? "ok" : "err"); }

async function login(candidate) {
  token = candidate;
  const r = await api("GET", "/status");
  if (r.status === 401 || r.status === 403) {
    token = ""; sessionStorage.removeItem("youxu.token"); document.body.classList.remove("authed");
    say("login-msg", t("token_bad"), false); $("logout-btn").hidden = true;
    return;
  }
  sessionStorage.setItem("youxu.token", token);
  $("logout-btn").hidden = false;
  if (r.role !== "write") { document.body.classList.remove("authed"); say("login-msg", t("token_read"), false); return; }
  document.body.classList.add("authed");
  say("login-msg", t("token_ok"), true);
}

$("login-form").addEventListener("submit", (e) => { e.preventDefault(); login($("login-token").value.trim()); });
$("logout-btn").addEventListener("click", () => {
  token = ""; sessionStorage.removeItem("youxu.token"); document.body.classList.remove("authed");
  $("logout-btn").hidden = true; say("login-msg", "", true);
});
$("lang").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("youxu.lang", lang); translate(); });

$("book-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const dep = new Date($("book-departure").value);
  const body = { schema: "youxu.session/1", departure: dep.toISOString().replace(/\.\d{3}Z$/, "Z"),
    energy_kwh: Number($("book-energy").value), v2g: $("book-v2g").checked, priority: $("book-priority").value };
  const r = await api("POST", "/sessions/" + encodeURIComponent($("book-pile").value) + "/request", body);
  if (r.status === 202) say("book-msg", t("booked"), true);
  else say("book-msg", `${t("refused")} (${r.status}) ${r.data ? (r.data.field ? r.data.field + ": " : "") + r.data.detail : ""}`, false);
});

$("pile-rows").addEventListener("click", async (e) => {
  const b = e.target.closest("button[data-act]");
  if (!b) return;
  const pile = b.closest("tr").dataset.pile, act = b.dataset.act;
  let body = { action: act };
  if (act !== "resume") {
    const m = Number(prompt(`${pile}: ${t(act)} (${t("minutes")})`, "30"));
    if (!(m > 0)) return;
    body.minutes = m;
  }
  const r = await api("POST", "/piles/" + encodeURIComponent(pile) + "/override", body);
  say("book-msg", r.status === 202 ? `${pile}: ${t(act)} ✓` : `${t("refused")} (${r.status}) ${r.data ? r.data.detail : ""}`, r.status === 202);
});

(function init() {
  const d = new Date(Date.now() + 8 * 3600 * 1000);
  d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
  $("book-departure").value = d.toISOString().slice(0, 16);
  translate();
  connect();
  if (token) login(token);
})();
