// The API docs page: fetches /api/v1/openapi.json (same origin) and lists
// every operation by tag with its parameters, bodies, responses and
// examples. No framework; text goes in through textContent only.
"use strict";

(function () {
  const DOC_URL = "/api/v1/openapi.json";
  const METHODS = ["get", "put", "post", "patch", "delete"];
  let doc = null;

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return e;
  }

  // Text with `code` spans, as the document's descriptions write them.
  function prose(text) {
    const f = document.createDocumentFragment();
    String(text || "").split("`").forEach((part, i) => {
      if (!part) return;
      f.append(i % 2 ? el("code", {}, part) : document.createTextNode(part));
    });
    return f;
  }

  function resolve(s) {
    let seen = 0;
    while (s && s.$ref && seen++ < 20) {
      const parts = s.$ref.replace(/^#\//, "").split("/");
      s = parts.reduce((o, p) => (o ? o[p] : undefined), doc);
    }
    return s || {};
  }

  function refName(s) {
    return s && s.$ref ? s.$ref.split("/").pop() : null;
  }

  // A short type label: `string`, `integer | null`, `array of Foo`, `Foo`.
  function typeOf(s) {
    if (!s) return "any";
    const name = refName(s);
    if (name) return name;
    if (s.oneOf) return s.oneOf.map(typeOf).join(" | ");
    if (s.anyOf) return s.anyOf.map(typeOf).join(" | ");
    if (s.allOf) return s.allOf.map(typeOf).join(" & ");
    let t = Array.isArray(s.type) ? s.type.join(" | ") : s.type || (s.properties ? "object" : "any");
    if (s.type === "array" || (Array.isArray(s.type) && s.type.includes("array"))) {
      t = t.replace("array", "array of " + typeOf(s.items));
    }
    if (s.format) t += " (" + s.format + ")";
    if (s.enum) t += ": " + s.enum.map((v) => JSON.stringify(v)).join(", ");
    return t;
  }

  // The properties of an object schema (through allOf and $ref), each with
  // whether it is required.
  function properties(s, depth) {
    s = resolve(s);
    const out = [];
    if (depth > 6) return out;
    for (const part of s.allOf || []) out.push(...properties(part, depth + 1));
    const req = new Set(s.required || []);
    for (const [k, v] of Object.entries(s.properties || {})) {
      out.push({ name: k, schema: v, required: req.has(k) });
    }
    return out;
  }

  function schemaBlock(s, depth) {
    depth = depth || 0;
    const r = resolve(s);
    const box = el("div", { class: "schema" });
    box.append(el("p", {}, el("code", {}, typeOf(s)), r.description ? " — " : null, r.description ? prose(r.description) : null));
    const variants = r.oneOf || r.anyOf;
    if (variants && depth < 3) {
      const ul = el("ul");
      for (const v of variants) ul.append(el("li", {}, schemaBlock(v, depth + 1)));
      box.append(el("p", {}, "One of:"), ul);
      return box;
    }
    const target = r.type === "array" ? resolve(r.items) : r;
    const props = properties(target, 0);
    if (props.length && depth < 3) {
      const t = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "about"))));
      const tb = el("tbody");
      for (const p of props) {
        const ps = resolve(p.schema);
        tb.append(
          el(
            "tr",
            {},
            el("td", {}, el("code", {}, p.name), p.required ? " " : null, p.required ? el("span", { class: "badge" }, "required") : null),
            el("td", {}, el("code", {}, typeOf(p.schema))),
            el("td", {}, prose(p.schema.description || ps.description))
          )
        );
      }
      t.append(tb);
      box.append(t);
    }
    return box;
  }

  function exampleOf(media) {
    if (!media) return undefined;
    if (media.example !== undefined) return media.example;
    if (media.examples) {
      const first = Object.values(media.examples)[0];
      if (first && first.value !== undefined) return first.value;
    }
    const s = resolve(media.schema);
    if (s.example !== undefined) return s.example;
    if (s.examples && s.examples.length) return s.examples[0];
    if (s.type === "array" && s.items) {
      const i = resolve(s.items);
      if (i.example !== undefined) return [i.example];
    }
    return undefined;
  }

  function contentBlock(content) {
    const box = el("div");
    for (const [type, media] of Object.entries(content || {})) {
      box.append(el("p", {}, el("span", { class: "badge" }, type)));
      if (media.schema) box.append(schemaBlock(media.schema));
      const ex = exampleOf(media);
      if (ex !== undefined) {
        box.append(el("p", {}, "Example:"), el("pre", {}, typeof ex === "string" ? ex : JSON.stringify(ex, null, 2)));
      }
    }
    return box;
  }

  function security(op) {
    const reqs = op.security || doc.security || [];
    if (!reqs.length) return null;
    const alts = reqs.map((r) => {
      const names = Object.keys(r);
      return names.length ? names.join(" + ") : "none";
    });
    return el("p", {}, "Authentication: ", el("code", {}, alts.join(" or ")));
  }

  function operation(path, method, op, pathItem) {
    const id = (method + "-" + path).replace(/[^A-Za-z0-9_-]+/g, "-");
    const summary = el(
      "summary",
      {},
      el("span", { class: "method m-" + method }, method),
      el("span", { class: "path" }, path),
      op.summary ? el("span", { class: "summary" }, prose(op.summary)) : null
    );
    const body = el("div", { class: "op-body" });
    if (op.description) body.append(el("p", {}, prose(op.description)));
    const sec = security(op);
    if (sec) body.append(sec);

    const params = [...(pathItem.parameters || []), ...(op.parameters || [])].map(resolve);
    if (params.length) {
      const t = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "about"))));
      const tb = el("tbody");
      for (const p of params) {
        const ex = p.example !== undefined ? p.example : resolve(p.schema).example;
        tb.append(
          el(
            "tr",
            {},
            el("td", {}, el("code", {}, p.name), p.required ? " " : null, p.required ? el("span", { class: "badge" }, "required") : null),
            el("td", {}, p.in),
            el("td", {}, el("code", {}, typeOf(p.schema))),
            el("td", {}, prose(p.description), ex !== undefined ? " (e.g. " : null, ex !== undefined ? el("code", {}, String(ex)) : null, ex !== undefined ? ")" : null)
          )
        );
      }
      t.append(tb);
      body.append(el("h4", {}, "Parameters"), t);
    }

    if (op.requestBody) {
      const rb = resolve(op.requestBody);
      body.append(el("h4", {}, "Request body" + (rb.required ? "" : " (optional)")));
      if (rb.description) body.append(el("p", {}, prose(rb.description)));
      body.append(contentBlock(rb.content));
    }

    body.append(el("h4", {}, "Responses"));
    for (const [status, r0] of Object.entries(op.responses || {})) {
      const r = resolve(r0);
      const row = el("div", { class: "response" });
      row.append(el("p", {}, el("span", { class: "status s" + status[0] }, status), " ", prose(r.description)));
      if (r.headers) {
        for (const [h, hv] of Object.entries(r.headers)) {
          row.append(el("p", {}, "Header ", el("code", {}, h), hv.description ? " — " : null, hv.description ? prose(hv.description) : null));
        }
      }
      if (r.content) row.append(contentBlock(r.content));
      body.append(row);
    }
    const d = el("details", { class: "op", id: id }, summary, body);
    d.dataset.search = (method + " " + path + " " + (op.summary || "") + " " + (op.description || "")).toLowerCase();
    return d;
  }

  function render() {
    const main = document.getElementById("ops");
    const toc = document.getElementById("toc");
    main.textContent = "";
    const info = doc.info || {};
    if (info.description) {
      const intro = el("section", { class: "intro" });
      for (const para of info.description.split(/\n\n+/)) intro.append(el("p", {}, prose(para)));
      intro.append(el("p", {}, "Version " + (info.version || "?") + ", OpenAPI " + doc.openapi + "."));
      main.append(intro);
    }
    const tags = (doc.tags || []).map((t) => t.name);
    const byTag = new Map(tags.map((t) => [t, []]));
    for (const [path, item] of Object.entries(doc.paths || {})) {
      for (const m of METHODS) {
        if (!item[m]) continue;
        const tag = (item[m].tags && item[m].tags[0]) || "other";
        if (!byTag.has(tag)) byTag.set(tag, []);
        byTag.get(tag).push([path, m, item[m], item]);
      }
    }
    for (const [tag, ops] of byTag) {
      if (!ops.length) continue;
      const meta = (doc.tags || []).find((t) => t.name === tag) || {};
      const sec = el("section", { class: "tag", id: "tag-" + tag }, el("h2", {}, tag));
      if (meta.description) sec.append(el("p", {}, prose(meta.description)));
      const list = el("ul");
      for (const [path, m, op, item] of ops) {
        const node = operation(path, m, op, item);
        sec.append(node);
        list.append(el("li", {}, el("a", { href: "#" + node.id }, m.toUpperCase() + " " + path)));
      }
      main.append(sec);
      toc.append(el("h2", {}, el("a", { href: "#tag-" + tag }, tag)), list);
    }
    // Opening the operation a link points to.
    const open = () => {
      const t = location.hash && document.getElementById(location.hash.slice(1));
      if (t && t.tagName === "DETAILS") t.open = true;
    };
    window.addEventListener("hashchange", open);
    open();
    const row = document.getElementById("filter-row");
    const input = document.getElementById("filter");
    row.hidden = false;
    input.addEventListener("input", () => {
      const q = input.value.trim().toLowerCase();
      for (const d of document.querySelectorAll("details.op")) {
        d.hidden = q !== "" && !d.dataset.search.includes(q);
      }
    });
  }

  async function load() {
    const status = document.getElementById("status");
    try {
      const r = await fetch(DOC_URL, { credentials: "same-origin" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      doc = await r.json();
      render();
    } catch (e) {
      status.textContent = "The document could not be loaded (" + e.message + "): ";
      status.append(el("a", { href: DOC_URL }, DOC_URL));
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", load);
  else load();
})();
