// The chat backend's side of Custom Authentication in Node.js: verify the gateway's
// assertion (HS256, sign_key) with node:crypto and keep the contact in SQLite, as the Go
// package contactstore does, in the same tables. SQLite here is sql.js (WebAssembly, no
// native build), which keeps the database in memory: save it with db.export().
// node:sqlite (Node 22.5+) and better-sqlite3 take the same SQL through their own calls.
import { createHmac, timingSafeEqual } from "node:crypto";

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS contacts (
  id INTEGER PRIMARY KEY, bot_id TEXT NOT NULL, identify_by TEXT NOT NULL,
  match_key TEXT NOT NULL, external_id TEXT NOT NULL, name TEXT NOT NULL,
  email TEXT NOT NULL, phone_number TEXT NOT NULL, country_code TEXT NOT NULL,
  avatar TEXT NOT NULL, label TEXT NOT NULL, metadata TEXT NOT NULL,
  seen_at BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
  UNIQUE (bot_id, identify_by, match_key));
CREATE TABLE IF NOT EXISTS leads (
  id INTEGER PRIMARY KEY, bot_id TEXT NOT NULL, visitor TEXT NOT NULL,
  name TEXT NOT NULL, email TEXT NOT NULL, created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL, UNIQUE (bot_id, visitor));`;

// The contact's columns and the data fields they hold.
const FIELDS = { external_id: "id", name: "name", email: "email", phone_number: "phone_number",
  country_code: "country_code", avatar: "avatar", label: "label" };
const COLUMNS = Object.keys(FIELDS);

// verify returns the assertion's claims, or throws: HS256 only, issuer, audience = the
// bot the request is for, expiry. (jose does the same: jwtVerify(token, key,
// { algorithms: ["HS256"], issuer: "custom_auth", audience: bot }).)
export function verify(token, key, bot, leeway = 5) {
  const [header64, payload64, signature64] = token.split(".");
  const header = JSON.parse(Buffer.from(header64, "base64url"));
  if (header.alg !== "HS256" || "crit" in header) throw new Error("algorithm not allowed");
  const expected = createHmac("sha256", key).update(`${header64}.${payload64}`).digest();
  const signature = Buffer.from(signature64, "base64url");
  if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) throw new Error("invalid signature");
  const claims = JSON.parse(Buffer.from(payload64, "base64url"));
  const now = Date.now() / 1000;
  if (claims.iss !== "custom_auth" || claims.aud !== bot) throw new Error("not for this bot");
  if (!(claims.iat - leeway <= now && now < claims.exp + leeway)) throw new Error("expired or not yet valid");
  return claims;
}

// matchKey is the value a contact is matched by: the id as sent, the email lower-cased,
// the phone's digits after the country code's.
export function matchKey(identifyBy, data) {
  const text = (field) => String(data[field] ?? "").trim();
  if (identifyBy === "id") return text("id");
  if (identifyBy === "email") return text("email").toLowerCase();
  if (identifyBy === "phone_number") {
    const number = text("phone_number").replace(/(?!^\+)[^0-9]/g, "");
    return number.replace("+", "") ? text("country_code").replace(/[^0-9]/g, "") + ":" + number : "";
  }
  return "";
}

const withoutNulls = (o) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null));
const nanos = () => BigInt(Date.now()) * 1000000n;

// save creates the contact, or updates it with the latest answer: "created", "updated"
// or "unchanged". Fields sent replace, fields left out stay; metadata merges key by key,
// null removes; an answer older than the stored one changes nothing.
export function save(db, bot, claims) {
  const data = claims.contact, identifyBy = claims.idb, key = matchKey(identifyBy, data);
  if (!key) throw new Error("no primary-key value");
  const seenAt = BigInt(claims.iat) * 1000000000n, now = nanos();
  const fields = Object.fromEntries(COLUMNS.filter((c) => data[FIELDS[c]] != null && data[FIELDS[c]] !== "")
    .map((c) => [c, String(data[FIELDS[c]])]));
  const patch = data.metadata ?? {};
  db.exec("BEGIN IMMEDIATE");
  try {
    const created = db.exec(
      `INSERT INTO contacts (bot_id, identify_by, match_key, ${COLUMNS.join(", ")}, metadata, seen_at, created_at, updated_at)
       VALUES (?, ?, ?, ${COLUMNS.map(() => "?").join(", ")}, ?, ?, ?, ?)
       ON CONFLICT (bot_id, identify_by, match_key) DO NOTHING RETURNING id`,
      [bot, identifyBy, key, ...COLUMNS.map((c) => fields[c] ?? ""), JSON.stringify(withoutNulls(patch)),
        String(seenAt), String(now), String(now)]);
    const outcome = created.length ? "created" : update(db, bot, identifyBy, key, fields, patch, seenAt, now);
    db.exec("COMMIT");
    return outcome;
  } catch (err) {
    db.exec("ROLLBACK");
    throw err;
  }
}

function update(db, bot, identifyBy, key, fields, patch, seenAt, now) {
  // Times are compared and kept in SQL: nanoseconds do not fit in a JavaScript number.
  const select = db.prepare("SELECT *, seen_at > ? AS newer FROM contacts WHERE bot_id = ? AND identify_by = ? AND match_key = ?");
  select.bind([String(seenAt), bot, identifyBy, key]);
  select.step();
  const stored = select.getAsObject();
  select.free();
  if (stored.newer) return "unchanged";
  const metadata = withoutNulls({ ...JSON.parse(stored.metadata), ...patch });
  const merged = COLUMNS.map((c) => fields[c] ?? stored[c]);
  const changed = COLUMNS.some((c, i) => merged[i] !== stored[c]) ||
    JSON.stringify(Object.entries(metadata).sort()) !== JSON.stringify(Object.entries(JSON.parse(stored.metadata)).sort());
  db.run(`UPDATE contacts SET ${COLUMNS.map((c) => c + " = ?").join(", ")}, metadata = ?, seen_at = ?,
          updated_at = CASE WHEN ? THEN ? ELSE updated_at END WHERE id = ?`,
    [...merged, JSON.stringify(metadata), String(seenAt), changed ? 1 : 0, String(now), stored.id]);
  return changed ? "updated" : "unchanged";
}

// saveLead keeps what an anonymous visitor typed: a lead of their own, never matched
// with a contact, whatever the email.
export function saveLead(db, bot, visitor, name, email) {
  const now = String(nanos());
  db.run(`INSERT INTO leads (bot_id, visitor, name, email, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
          ON CONFLICT (bot_id, visitor) DO UPDATE SET name = excluded.name, email = excluded.email,
          updated_at = excluded.updated_at`,
    [bot, visitor, name.trim().slice(0, 200), email.trim().slice(0, 320), now, now]);
}

// handle is one request of the widget: the contact's outcome, or "anonymous".
export function handle(db, key, headers) {
  const bot = headers["x-bot-id"] ?? "", token = headers["x-contact-assertion"] ?? "";
  let claims;
  try {
    claims = verify(token, key, bot);
  } catch {
    return "anonymous"; // the default "Collect Information" flow: saveLead
  }
  return save(db, bot, claims);
}
