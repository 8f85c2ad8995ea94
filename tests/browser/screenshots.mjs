// Screenshots of the console's main pages at 1280 and 390 px wide, into
// target/screenshots/, so a reviewer can look without running a browser.
// Run by `scripts/screenshots`.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { Rekey, launch, signIn, redisCli, PASSWORD, ROOT } from "./world.mjs";

const out = join(ROOT, "target/screenshots");
mkdirSync(out, { recursive: true });
const r = new Rekey("shots", "127.0.0.1");
let browser;
try {
  r.cli(["org", "create", "acme", "--name", "Acme Inc"]);
  r.cli(["user", "create", "--org", "acme", "--email", "admin@acme.test", "--permission", "read_write", "--admin", "--password-stdin"], PASSWORD);
  r.cli(["operator", "create", "--email", "op@platform.test", "--password-stdin"], PASSWORD);
  r.cli(["app", "create", "--org", "acme", "--name", "crm", "--scope", "read_write", "--callback", "https://crm.example/cb"]);
  redisCli(["ACL", "SETUSER", "rk_shots", "on", "resetpass", ">shots-password-1", "+ping", "+acl|setuser", "+acl|dryrun"]);
  r.cli(["connection", "create", "--org", "acme", "--kind", "redis", "--name", "cache", "--setting", "host=127.0.0.1", "--setting", "port=6379", "--setting", "username=rk_shots"]);
  r.cli(["connection", "set-credential", "--org", "acme", "--name", "cache", "--field", "password", "--value-stdin"], "shots-password-1\n");
  r.cli(["connection", "create", "--org", "acme", "--kind", "jira", "--name", "jira-prod"]);
  await r.serve({ REKEY_JOBS_INTERVAL: "1s" });
  r.cli(["rotate", "--org", "acme", "--connection", "cache", "--cutover-window", "0s"]);
  browser = await launch();
  const pages = {
    admin: ["/ui/", "/ui/orgs/acme/connections", "/ui/orgs/acme/connections/cache", "/ui/orgs/acme/connections/new?kind=redis",
      "/ui/orgs/acme/rotations", "/ui/orgs/acme/apps", "/ui/orgs/acme/apps/crm", "/ui/orgs/acme/apps/crm/authorizations",
      "/ui/orgs/acme/keys", "/ui/orgs/acme/users", "/ui/orgs/acme/age", "/ui/orgs/acme/audit"],
    operator: ["/ui/", "/ui/orgs", "/ui/rotations", "/ui/incidents", "/ui/blast-radius", "/ui/catalog", "/ui/service-keys",
      "/ui/age", "/ui/audit", "/status"],
  };
  for (const [who, email] of [["admin", "admin@acme.test"], ["operator", "op@platform.test"]]) {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await signIn(page, r.url, email);
    for (const width of [1280, 390]) {
      await page.setViewportSize({ width, height: width === 390 ? 844 : 900 });
      for (const p of pages[who]) {
        await page.goto(`${r.url}${p}`);
        const name = `${who}${p.replace(/[^a-z0-9]+/gi, "-").replace(/-$/, "")}-${width}.png`;
        await page.screenshot({ path: join(out, name), fullPage: true });
      }
    }
    await ctx.close();
  }
  const login = await browser.newPage();
  await login.goto(`${r.url}/ui/login`);
  for (const width of [1280, 390]) {
    await login.setViewportSize({ width, height: width === 390 ? 844 : 900 });
    await login.screenshot({ path: join(out, `login-${width}.png`), fullPage: true });
  }
  console.log(`screenshots written to ${out}`);
} finally {
  if (browser) await browser.close();
  r.stop();
}
