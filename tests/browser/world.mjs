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

export function redisCli(args) {
  const r = spawnSync("redis-cli", ["-h", "127.0.0.1", "-p", "6379", ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`redis-cli ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}
