"""The chat backend's side of Custom Authentication in Python, with the standard library
only: verify the gateway's assertion (HS256, sign_key) and keep the contact in SQLite,
as the Go package contactstore does, in the same tables."""
import base64
import hashlib
import hmac
import json
import re
import sqlite3
import time

SCHEMA = """
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
    updated_at BIGINT NOT NULL, UNIQUE (bot_id, visitor));
"""
# The contact's columns and the data fields they hold.
FIELDS = {"external_id": "id", "name": "name", "email": "email", "phone_number": "phone_number",
          "country_code": "country_code", "avatar": "avatar", "label": "label"}


def open_db(path):
    db = sqlite3.connect(path, isolation_level=None, timeout=10)  # transactions below
    db.row_factory = sqlite3.Row
    db.executescript(SCHEMA)
    return db


def b64url(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify(token, key, bot, leeway=5):
    """The assertion's claims, or ValueError: HS256 only, issuer, audience = the bot
    the request is for, expiry. (PyJWT does the same: jwt.decode(token, key,
    algorithms=["HS256"], audience=bot, issuer="custom_auth").)"""
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(b64url(header_b64))
    if header.get("alg") != "HS256" or "crit" in header:
        raise ValueError("algorithm not allowed")
    signed = f"{header_b64}.{payload_b64}".encode()
    if not hmac.compare_digest(hmac.new(key, signed, hashlib.sha256).digest(), b64url(signature_b64)):
        raise ValueError("invalid signature")
    claims = json.loads(b64url(payload_b64))
    now = time.time()
    if claims.get("iss") != "custom_auth" or claims.get("aud") != bot:
        raise ValueError("not for this bot")
    if not claims["iat"] - leeway <= now < claims["exp"] + leeway:
        raise ValueError("expired or not yet valid")
    return claims


def match_key(identify_by, data):
    """The value a contact is matched by: the id as sent, the email lower-cased, the
    phone's digits after the country code's."""
    text = lambda field: str(data.get(field) or "").strip()
    if identify_by == "id":
        return text("id")
    if identify_by == "email":
        return text("email").lower()
    if identify_by == "phone_number":
        number = re.sub(r"(?!^\+)[^0-9]", "", text("phone_number"))
        return re.sub(r"[^0-9]", "", text("country_code")) + ":" + number if number.strip("+") else ""
    return ""


def save(db, bot, claims):
    """Creates the contact, or updates it with the latest answer: 'created', 'updated'
    or 'unchanged'. Fields sent replace, fields left out stay; metadata merges key by
    key, null removes; an answer older than the stored one changes nothing."""
    data, identify_by = claims["contact"], claims["idb"]
    key = match_key(identify_by, data)
    if not key:
        raise ValueError("no primary-key value")
    seen_at, now = claims["iat"] * 10**9, time.time_ns()
    fields = {column: str(data[field]) for column, field in FIELDS.items() if data.get(field) not in (None, "")}
    patch = data.get("metadata") or {}
    db.execute("BEGIN IMMEDIATE")  # one writer at a time: the row is ours until COMMIT
    try:
        row = {column: fields.get(column, "") for column in FIELDS}
        created = db.execute(
            "INSERT INTO contacts (bot_id, identify_by, match_key, " + ", ".join(FIELDS) + ", metadata, seen_at, created_at, updated_at)"
            " VALUES (?, ?, ?, " + ", ".join("?" * len(FIELDS)) + ", ?, ?, ?, ?)"
            " ON CONFLICT (bot_id, identify_by, match_key) DO NOTHING RETURNING id",
            (bot, identify_by, key, *row.values(), json.dumps({k: v for k, v in patch.items() if v is not None}), seen_at, now, now),
        ).fetchone()
        outcome = "created" if created else update(db, bot, identify_by, key, fields, patch, seen_at, now)
        db.execute("COMMIT")
        return outcome
    except BaseException:
        db.execute("ROLLBACK")
        raise


def update(db, bot, identify_by, key, fields, patch, seen_at, now):
    stored = db.execute("SELECT * FROM contacts WHERE bot_id = ? AND identify_by = ? AND match_key = ?",
                        (bot, identify_by, key)).fetchone()
    if seen_at < stored["seen_at"]:
        return "unchanged"
    metadata = json.loads(stored["metadata"])
    metadata.update(patch)
    metadata = {k: v for k, v in metadata.items() if v is not None}
    merged = {column: fields.get(column, stored[column]) for column in FIELDS}
    changed = merged != {column: stored[column] for column in FIELDS} or metadata != json.loads(stored["metadata"])
    db.execute("UPDATE contacts SET " + ", ".join(f"{column} = ?" for column in FIELDS) +
               ", metadata = ?, seen_at = ?, updated_at = ? WHERE id = ?",
               (*merged.values(), json.dumps(metadata), seen_at, now if changed else stored["updated_at"], stored["id"]))
    return "updated" if changed else "unchanged"


def save_lead(db, bot, visitor, name, email):
    """What an anonymous visitor typed: a lead of their own, never matched with a
    contact, whatever the email."""
    now = time.time_ns()
    db.execute("INSERT INTO leads (bot_id, visitor, name, email, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
               " ON CONFLICT (bot_id, visitor) DO UPDATE SET name = excluded.name, email = excluded.email,"
               " updated_at = excluded.updated_at", (bot, visitor, name.strip()[:200], email.strip()[:320], now, now))


def handle(db, key, headers):
    """One request of the widget: the contact's outcome, or 'anonymous'."""
    bot, token = headers.get("X-Bot-Id", ""), headers.get("X-Contact-Assertion", "")
    try:
        claims = verify(token, key, bot)
    except (ValueError, KeyError, TypeError):
        return "anonymous"  # the default "Collect Information" flow: save_lead
    return save(db, bot, claims)
