// The world the browser tests run in: the real `rekey` binary (built by the
// caller), a consumer server and a second rekey as the OAuth provider, each
// on its own fresh SQLite data dir, and Debian's Chromium. The provider is
// reached as `localhost` and the consumer as `127.0.0.1`: two sites, as in
// production, so their session cookies never meet.

import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

export const ROOT = resolve(new URL("../..", import.meta.url).pathname);
export const BIN = process.env.REKEY_BIN || join(ROOT, "target/debug/rekey");
export const PASSWORD = "correct-horse-battery-staple";
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

async function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

export class Rekey {
  constructor(name, host) {
    this.name = name;
    this.host = host;
    this.dir = mkdtempSync(join(tmpdir(), `rekey-browser-${name}-`));
    this.env = { ...process.env, REKEY_DATA_DIR: join(this.dir, "data"), REKEY_LOG: "warn" };
  }

  // Runs the CLI; returns its stdout (JSON parsed with `json`), throws on failure.
  cli(args, stdin) {
    const r = spawnSync(BIN, args, { env: this.env, input: stdin ?? "", encoding: "utf8" });
    if (r.status !== 0) {
      throw new Error(`rekey ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
    }
    return r.stdout;
  }

  json(args, stdin) {
    return JSON.parse(this.cli([...args, "--json"], stdin));
  }

  async serve(extraEnv = {}) {
    this.port = await freePort();
    this.url = `http://${this.host}:${this.port}`;
    this.proc = spawn(BIN, ["serve", "--listen", `127.0.0.1:${this.port}`, "--public-url", this.url], {
      env: { ...this.env, ...extraEnv },
      stdio: ["ignore", "ignore", "pipe"],
    });
    this.log = "";
    this.proc.stderr.on("data", (d) => { this.log += d; });
    for (let i = 0; i < 150; i++) {
      try {
        const r = await fetch(`${this.url}/readyz`);
        if (r.ok) return this;
      } catch { /* not yet */ }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`rekey ${this.name} did not start:\n${this.log}`);
  }

  stop() {
    if (this.proc) this.proc.kill("SIGKILL");
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

export function artifacts() {
  const dir = join(ROOT, "target/browser");
  mkdirSync(dir, { recursive: true });
  return dir;
}

// Signs in through the console's form.
export async function signIn(page, base, email, password = PASSWORD) {
  await page.goto(`${base}/ui/`);
  await page.waitForURL(/\/ui\/login/);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${base}/ui/`);
}

// The page fits its width: no horizontal scrolling.
export async function fits(page) {
  return page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);
}

// The elements that reach past the viewport's right edge (the innermost
// ones), for a failed `fits` to name.
export async function overflowing(page) {
  return page.evaluate(() => {
    const w = window.innerWidth + 1;
    const past = [...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > w);
    return past
      .filter((e) => !past.some((c) => c !== e && e.contains(c)))
      .slice(0, 5)
      .map((e) => `${e.tagName.toLowerCase()}${e.className ? "." + e.className : ""} (${Math.round(e.getBoundingClientRect().right)} px): ${(e.textContent || "").trim().slice(0, 60)}`);
  });
}

export function redisCli(args) {
  const r = spawnSync("redis-cli", ["-h", "127.0.0.1", "-p", "6379", ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`redis-cli ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

// Every visible piece of text on the page whose colour against its
// effective background (the element's and its ancestors' background
// colours composited, the canvas white beneath) has a WCAG 2 contrast
// below `min`: [{ text, fg, bg, ratio }]. SVG text is measured by its
// fill. Disabled controls and text moved off-screen (the skip link until
// focused) are exempt, as WCAG exempts them.
export async function lowContrast(page, min = 4.5) {
  return page.evaluate((min) => {
    const parse = (c) => {
      const m = /rgba?\(([^)]+)\)/.exec(c || "");
      if (!m) return null;
      const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
      return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
    };
    const over = (top, under) => [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3]));
    const lum = (c) => {
      const [r, g, b] = c.map((v) => {
        v /= 255;
        return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const ratio = (a, b) => {
      const [x, y] = [lum(a), lum(b)];
      return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
    };
    const background = (el) => {
      const layers = [];
      for (let e = el; e; e = e.parentElement) {
        const c = parse(getComputedStyle(e).backgroundColor);
        if (c && c[3] > 0) {
          layers.push(c);
          if (c[3] >= 1) break;
        }
      }
      let bg = [255, 255, 255];
      for (const c of layers.reverse()) bg = over(c, bg);
      return bg;
    };
    const hex = (c) => "#" + c.slice(0, 3).map((v) => Math.round(v).toString(16).padStart(2, "0")).join("");
    const out = [];
    const done = new Set();
    const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    while (walk.nextNode()) {
      const node = walk.currentNode;
      const el = node.parentElement;
      if (!el || !node.textContent.trim() || done.has(el)) continue;
      done.add(el);
      const s = getComputedStyle(el);
      const box = el.getBoundingClientRect();
      if (box.width === 0 || box.height === 0 || box.right <= 0 || box.bottom <= 0) continue;
      if (s.visibility !== "visible" || Number(s.opacity) === 0) continue;
      if (el.closest("[disabled], [aria-hidden=true]")) continue;
      if (["TITLE", "DESC", "SCRIPT", "STYLE", "OPTION"].includes(el.tagName.toUpperCase())) continue;
      const raw = parse(el instanceof SVGElement ? s.fill : s.color);
      if (!raw) continue;
      const bg = background(el);
      const fg = over(raw, bg);
      const r = ratio(fg, bg);
      if (r < min) {
        out.push({ text: node.textContent.trim().slice(0, 40), tag: el.tagName.toLowerCase(), fg: hex(fg), bg: hex(bg), ratio: Math.round(r * 100) / 100 });
      }
    }
    return out;
  }, min);
}

// Checks `paths` of `base` in the light and the dark colour scheme:
// throws naming every piece of text below 4.5:1; returns how many pages
// were checked.
export async function checkContrast(page, base, paths) {
  const bad = [];
  let n = 0;
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    for (const p of paths) {
      await page.goto(`${base}${p}`);
      n++;
      for (const b of await lowContrast(page)) {
        bad.push(`${scheme} ${p}: "${b.text}" (${b.tag}) ${b.fg} on ${b.bg} is ${b.ratio}:1`);
      }
      if (scheme === "light") {
        for (const a of await a11yProblems(page)) bad.push(`${p}: ${a}`);
      }
    }
  }
  await page.emulateMedia({ colorScheme: "light" });
  if (bad.length) throw new Error(`text below 4.5:1 contrast, an unlabelled control or focus out of page order:\n       ${bad.join("\n       ")}`);
  return n;
}

// What keeps a page from being used by keyboard or screen reader: a form
// control, button or link without an accessible name, and focus that
// does not follow the page (a positive tabindex, or CSS that shows
// focusable things in another order than the document's).
export async function a11yProblems(page) {
  return page.evaluate(() => {
    const out = [];
    const named = (e) =>
      (e.getAttribute("aria-label") || "").trim() !== "" ||
      (e.getAttribute("aria-labelledby") || "").split(/\s+/).some((id) => id && document.getElementById(id)) ||
      (e.labels && e.labels.length > 0) ||
      (e.getAttribute("title") || "").trim() !== "";
    const describe = (e) => `${e.tagName.toLowerCase()}${e.name ? `[name=${e.name}]` : ""}${e.id ? "#" + e.id : ""}`;
    for (const e of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
      if (!named(e)) out.push(`${describe(e)} has no label`);
    }
    for (const e of document.querySelectorAll("button, a[href], summary")) {
      if ((e.textContent || "").trim() === "" && !named(e)) out.push(`${describe(e)} has no text or label`);
    }
    for (const e of document.querySelectorAll("[tabindex]")) {
      if (Number(e.getAttribute("tabindex")) > 0) out.push(`${describe(e)} has tabindex ${e.getAttribute("tabindex")}`);
    }
    const focusable = "a[href], button, input:not([type=hidden]), select, textarea, summary";
    for (const e of document.querySelectorAll("body *")) {
      const s = getComputedStyle(e);
      const reordered = (s.order && s.order !== "0") || /reverse/.test(s.flexDirection || "") || /dense/.test(s.gridAutoFlow || "");
      if (reordered && e.parentElement && e.parentElement.querySelector(focusable)) {
        out.push(`${describe(e)} is shown out of document order (order ${s.order}, ${s.flexDirection}, ${s.gridAutoFlow})`);
      }
    }
    return out;
  });
}
