// The console in a real browser (Debian's Chromium through playwright-core),
// against the real servers: sign in; create an app and complete an OAuth
// authorization as a user in a second browser context; revoke it from the
// Authorizations tab and see it Revoked; create a `rekey` connection and
// authorize it through the provider's pages (a second rekey), re-
// authenticate it and see its settings unchanged; rotate a Redis connection
// and watch it complete; start a dry-run incident, then a real one, and
// download its report; every visible text on the main pages has a
// contrast of at least 4.5:1 against its background, in the light and the
// dark colour scheme. Everything runs twice: with JavaScript, then
// without. A failing step saves a screenshot under target/browser/.
//
// `node console.mjs` after `cargo build`; `.ci/run` runs it.

import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Rekey, launch, artifacts, signIn, fits, overflowing, redisCli, checkContrast, lowContrast, PASSWORD } from "./world.mjs";

const out = artifacts();
let failures = 0;

function check(cond, what) {
  if (!cond) throw new Error(`expected: ${what}`);
}

async function step(name, page, fn) {
  const t = Date.now();
  try {
    await fn();
    console.log(`  ok   ${name} (${Date.now() - t} ms)`);
  } catch (e) {
    failures++;
    const shot = join(out, `${name.replace(/[^a-z0-9]+/gi, "-")}.png`);
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    console.log(`  FAIL ${name}: ${e.message}\n       screenshot: ${shot}`);
    throw e;
  }
}

function pkce() {
  const verifier = randomBytes(32).toString("base64url");
  const challenge = createHash("sha256").update(verifier).digest("base64url");
  return { verifier, challenge };
}

async function pass(browser, js, provider, consumer, tag) {
  console.log(`pass: JavaScript ${js ? "on" : "off"}`);
  const C = consumer.url;
  const admin = await browser.newContext({ javaScriptEnabled: js, acceptDownloads: true });
  const page = await admin.newPage();

  await step(`${tag} sign in`, page, async () => {
    await signIn(page, C, "admin@acme.test");
    check(await page.getByRole("heading", { name: "What needs you" }).isVisible(), "the first page");
    check(await fits(page), "no horizontal scrolling at 1280");
  });

  // --- an application, an authorization, its revocation ---------------
  const appName = `web-${tag}`;
  const callback = "http://127.0.0.1:9/cb";
  let clientId, secret;
  await step(`${tag} create an application, secret shown once`, page, async () => {
    await page.goto(`${C}/ui/orgs/acme/apps`);
    await page.getByLabel("Name", { exact: true }).fill(appName);
    await page.getByLabel("Scope").selectOption("read_write");
    await page.getByLabel(/Callback URLs/).fill(callback);
    await page.getByRole("button", { name: "Create application" }).click();
    clientId = (await page.locator("#shown-client-id").textContent()).trim();
    secret = (await page.locator("#shown-secret").textContent()).trim();
    check(secret.startsWith("rk_cs_"), "a client secret");
    check((await page.getByRole("button", { name: "Copy secret" }).isVisible()) === js, "copy buttons only with script");
    await page.goto(`${C}/ui/orgs/acme/apps`);
    check(!(await page.content()).includes(secret), "never shown again");
  });

  await step(`${tag} a user authorizes the app in a second browser`, page, async () => {
    const user = await browser.newContext({ javaScriptEnabled: js });
    const up = await user.newPage();
    const { verifier, challenge } = pkce();
    const q = new URLSearchParams({
      response_type: "code", client_id: clientId, redirect_uri: callback, scope: "read",
      state: "s1", code_challenge: challenge, code_challenge_method: "S256",
    });
    // Bounded: the Allow click's own failure is swallowed (the callback
    // is not served, so its navigation fails), and a consent page that
    // never reaches the callback must fail the step with its screenshot,
    // not hang the run.
    const code = new Promise((ok, fail) => {
      const late = setTimeout(() => fail(new Error("the consent never reached the callback in 30 s")), 30_000);
      up.on("request", (r) => {
        if (r.url().startsWith(callback)) {
          clearTimeout(late);
          ok(new URL(r.url()).searchParams.get("code"));
        }
      });
    });
    await up.goto(`${C}/oauth2/authorize?${q}`);
    await up.getByLabel("Email").fill("alice@acme.test");
    await up.getByLabel("Password").fill(PASSWORD);
    await up.getByRole("button", { name: "Sign in" }).click();
    await up.getByRole("button", { name: "Allow" }).click().catch(() => {});
    const c = await code;
    const r = await fetch(`${C}/oauth2/token`, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        authorization: "Basic " + Buffer.from(`${clientId}:${secret}`).toString("base64"),
      },
      body: new URLSearchParams({ grant_type: "authorization_code", code: c, redirect_uri: callback, code_verifier: verifier }),
    });
    check(r.ok, `the code is exchanged (${r.status})`);
    await user.close();
  });

  await step(`${tag} revoke it from the Authorizations tab`, page, async () => {
    await page.goto(`${C}/ui/orgs/acme/apps/${appName}/authorizations`);
    const row = page.getByRole("row").filter({ hasText: "alice@acme.test" });
    check(await row.getByText("Active", { exact: true }).isVisible(), "Active");
    await row.getByRole("link", { name: /Revoke/ }).click();
    await page.getByRole("button", { name: "Revoke" }).click();
    await page.waitForURL(/notice=revoked/);
    check(await page.getByRole("row").filter({ hasText: "alice@acme.test" }).getByText("Revoked", { exact: true }).isVisible(), "Revoked");
  });

  // --- a `rekey` connection through the provider's pages ---------------
  const conn = `upstream-${tag}`;
  await step(`${tag} create a rekey connection from the catalog`, page, async () => {
    await page.goto(`${C}/ui/orgs/acme/connections/new`);
    await page.getByLabel("What do you connect?").selectOption("rekey");
    await page.getByRole("button", { name: "Continue" }).click();
    await page.getByLabel(/Connection name/).fill(conn);
    await page.getByLabel(/rekey base URL/).fill(provider.url);
    await page.getByLabel(/^Scope/).selectOption("read_write");
    await page.getByRole("button", { name: "Create connection" }).click();
    await page.waitForURL(new RegExp(`/connections/${conn}\\?notice=created`));
    const app = provider.json(["app", "create", "--org", "prov", "--name", `consumer-${tag}`, "--scope", "read_write",
      "--callback", `${C}/oauth/callback`]);
    await page.getByLabel("Client ID").fill(app.client_id);
    await page.getByLabel("Client secret").fill(app.client_secret);
    await page.getByRole("button", { name: "Set OAuth client" }).click();
    await page.waitForURL(/notice=client/);
  });

  const authorizeThere = async (verb) => {
    await page.goto(`${C}/ui/orgs/acme/connections/${conn}`);
    await page.locator("details.menu summary").click();
    await page.getByRole("button", { name: verb, exact: true }).click();
    await page.waitForURL(new RegExp(`^${provider.url}`));
    if (await page.getByLabel("Email").isVisible().catch(() => false)) {
      await page.getByLabel("Email").fill("user@prov.test");
      await page.getByLabel("Password").fill(PASSWORD);
      await page.getByRole("button", { name: "Sign in" }).click();
    }
    await page.getByRole("button", { name: "Allow" }).click();
    await page.waitForURL(new RegExp(`^${C}/oauth/callback`));
    check(await page.getByText("Authentication status: connected").isVisible(), "the Authentication status banner");
    await page.getByRole("link", { name: /Back to/ }).click();
    await page.waitForURL(/notice=authorized/);
    check(await page.locator("h1 .badge").textContent() === "connected", "connected");
    return page.getByLabel(/rekey base URL/).inputValue();
  };
  await step(`${tag} authorize it at the provider`, page, async () => {
    check((await authorizeThere("Authorize")) === provider.url, "settings as entered");
  });
  await step(`${tag} re-authenticate it, settings unchanged`, page, async () => {
    check((await authorizeThere("Re-Authenticate")) === provider.url, "settings unchanged");
    const v = consumer.json(["connection", "show", "--org", "acme", "--name", conn]);
    check(v.settings.base_url === provider.url && v.settings.scope === "read_write", "stored settings unchanged");
  });

  // --- a Redis rotation, watched to the end ----------------------------
  const ruser = `rk_browser_${tag}_${randomBytes(4).toString("hex")}`;
  const rpass = randomBytes(16).toString("hex");
  redisCli(["ACL", "SETUSER", ruser, "on", "resetpass", `>${rpass}`, "+ping", "+acl|setuser", "+acl|dryrun"]);
  const rconn = `cache-${tag}`;
  await step(`${tag} rotate a Redis connection and watch it complete`, page, async () => {
    await page.goto(`${C}/ui/orgs/acme/connections/new?kind=redis`);
    await page.getByLabel(/Connection name/).fill(rconn);
    await page.getByLabel(/^Host/).fill("127.0.0.1");
    await page.getByLabel(/^Port/).fill("6379");
    await page.getByLabel(/^ACL user/).fill(ruser);
    await page.getByRole("button", { name: "Create connection" }).click();
    await page.waitForURL(/notice=created/);
    await page.locator("#credential").getByLabel(/^Password/).fill(rpass);
    await page.getByRole("button", { name: "Store credential" }).click();
    await page.waitForURL(/notice=credential/);
    check(!(await page.content()).includes(rpass), "the credential is never echoed");
    await page.goto(`${C}/ui/orgs/acme/connections/${rconn}/rotate`);
    check(await page.getByText("Dry run").isVisible(), "the dry-run plan first");
    await page.getByLabel("Cut-over window").fill("0s");
    await page.getByRole("button", { name: "Start rotation" }).click();
    await page.waitForURL(/\/rotations\/.+notice=started/);
    for (let i = 0; i < 60; i++) {
      const status = (await page.locator("main .badge").first().textContent()).trim();
      if (status === "completed") break;
      check(!["failed", "stalled", "cancelled"].includes(status), `not ${status}`);
      if (js) await page.waitForTimeout(1000); else { await page.waitForTimeout(500); await page.reload(); }
    }
    check((await page.locator("main .badge").first().textContent()).trim() === "completed", "completed");
  });

  await step(`${tag} phone width: no horizontal scrolling`, page, async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const p of ["/ui/", `/ui/orgs/acme/connections/${rconn}`, "/ui/orgs/acme/rotations", "/ui/orgs/acme/deliveries", `/ui/orgs/acme/apps/${appName}/authorizations`,
      "/ui/orgs/acme/apps", "/ui/orgs/acme/keys", "/ui/orgs/acme/users", "/ui/orgs/acme/age", "/ui/orgs/acme/audit"]) {
      await page.goto(`${C}${p}`);
      check(await fits(page), `${p} fits 390 px: ${JSON.stringify(await overflowing(page))}`);
    }
    await page.setViewportSize({ width: 1280, height: 900 });
  });
  await step(`${tag} text contrast of at least 4.5:1 on the org admin's pages, light and dark; every control labelled, focus in page order`, page, async () => {
    await checkContrast(page, C, [
      "/ui/", "/ui/orgs/acme/connections", "/ui/orgs/acme/connections/new",
      `/ui/orgs/acme/connections/${conn}?notice=authorized`, `/ui/orgs/acme/connections/${rconn}/rotate`,
      "/ui/orgs/acme/apps", `/ui/orgs/acme/apps/${appName}`, `/ui/orgs/acme/apps/${appName}/authorizations?notice=revoked`,
      "/ui/orgs/acme/keys", "/ui/orgs/acme/users", "/ui/orgs/acme/rotations", "/ui/orgs/acme/age",
      "/ui/orgs/acme/audit", "/ui/orgs/acme/deliveries", "/ui/orgs/acme/webhooks", "/ui/incidents",
      "/ui/no-such-page", "/status",
    ]);
  });
  await admin.close();

  // --- the operator: an incident, dry run then real, and its report ----
  const op = await browser.newContext({ javaScriptEnabled: js, acceptDownloads: true });
  const opage = await op.newPage();
  await step(`${tag} the operator starts an incident from its plan and downloads the report`, opage, async () => {
    await signIn(opage, C, "op@platform.test");
    await opage.goto(`${C}/ui/incidents`);
    await opage.getByLabel("Reason").fill(`browser ${tag}`);
    await opage.getByLabel(/^Scope/).fill("org:acme");
    await opage.getByLabel(/Connector kinds/).fill("redis");
    await opage.getByRole("button", { name: /Show the plan/ }).click();
    check(await opage.getByText("Dry run").isVisible(), "the plan");
    check(await opage.getByRole("cell", { name: new RegExp(rconn) }).count() > 0, "the Redis connection is an item");
    await opage.getByRole("button", { name: /Start the campaign/ }).click();
    await opage.waitForURL(/\/ui\/incidents\//);
    const dl = opage.waitForEvent("download");
    await opage.getByRole("link", { name: "Markdown" }).click();
    const file = await (await dl).path();
    check(readFileSync(file, "utf8").includes(rconn), "the report names the item");
    // the next pass starts its own over the same scope: this one must end
    for (let i = 0; i < 60; i++) {
      const status = consumer.json(["incident", "list"]).find((x) => x.reason === `browser ${tag}`).status;
      if (status !== "running") break;
      await opage.waitForTimeout(500);
    }
  });
  const operatorPages = (inc) => [
    "/ui/", "/ui/orgs", "/ui/rotations", "/ui/age", "/ui/audit", "/ui/incidents", `/ui/incidents/${inc}`,
    "/ui/catalog", "/ui/blast-radius", "/ui/service-keys", "/status",
  ];
  await step(`${tag} the operator's pages fit 1280 and 390 px without horizontal scrolling`, opage, async () => {
    const inc = consumer.json(["incident", "list"]).find((x) => x.reason === `browser ${tag}`).id;
    for (const width of [1280, 390]) {
      await opage.setViewportSize({ width, height: width === 390 ? 844 : 900 });
      for (const p of operatorPages(inc)) {
        await opage.goto(`${C}${p}`);
        check(await fits(opage), `${p} fits ${width} px: ${JSON.stringify(await overflowing(opage))}`);
      }
    }
    await opage.setViewportSize({ width: 1280, height: 900 });
  });
  await step(`${tag} text contrast of at least 4.5:1 on the operator's pages, light and dark; every control labelled, focus in page order`, opage, async () => {
    const inc = consumer.json(["incident", "list"]).find((x) => x.reason === `browser ${tag}`).id;
    await checkContrast(opage, C, operatorPages(inc));
  });
  await op.close();

  // signed out: the sign-in page, and its error after a wrong password
  const anon = await browser.newContext({ javaScriptEnabled: js });
  const apage = await anon.newPage();
  await step(`${tag} text contrast of at least 4.5:1 signed out, light and dark; every control labelled, focus in page order`, apage, async () => {
    await checkContrast(apage, C, ["/ui/login", "/status"]);
    await apage.goto(`${C}/ui/`);
    await apage.getByLabel("Email").fill("admin@acme.test");
    await apage.getByLabel("Password", { exact: true }).fill("a-wrong-password");
    await apage.getByRole("button", { name: "Sign in" }).click();
    await apage.waitForLoadState();
    for (const scheme of ["light", "dark"]) {
      await apage.emulateMedia({ colorScheme: scheme });
      const bad = await lowContrast(apage);
      check(bad.length === 0, `the sign-in error in ${scheme} is readable: ${JSON.stringify(bad)}`);
    }
  });
  await anon.close();
}

const provider = new Rekey("provider", "localhost");
const consumer = new Rekey("consumer", "127.0.0.1");
let browser;
try {
  provider.cli(["org", "create", "prov"]);
  provider.cli(["user", "create", "--org", "prov", "--email", "user@prov.test", "--permission", "read_write", "--password-stdin"], PASSWORD);
  consumer.cli(["org", "create", "acme"]);
  consumer.cli(["user", "create", "--org", "acme", "--email", "admin@acme.test", "--permission", "read_write", "--admin", "--password-stdin"], PASSWORD);
  consumer.cli(["user", "create", "--org", "acme", "--email", "alice@acme.test", "--permission", "read_write", "--password-stdin"], PASSWORD);
  consumer.cli(["operator", "create", "--email", "op@platform.test", "--password-stdin"], PASSWORD);
  await provider.serve();
  await consumer.serve();
  browser = await launch();
  await pass(browser, true, provider, consumer, "js");
  await pass(browser, false, provider, consumer, "nojs");
} catch (e) {
  if (!failures) console.log(`FAIL setup: ${e.stack}`);
  failures = Math.max(failures, 1);
} finally {
  if (browser) await browser.close();
  if (failures) {
    console.log(`\nconsumer log:\n${consumer.log ?? ""}`.slice(-4000));
  }
  provider.stop();
  consumer.stop();
}
console.log(failures ? `browser tests: ${failures} failed` : "browser tests: all passed");
process.exit(failures ? 1 : 0);
