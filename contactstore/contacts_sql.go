package contactstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// contactColumns are the columns of a contact after its id, in Record's order.
const contactColumns = `bot_id, identify_by, match_key, external_id, name, email, phone_number,
	country_code, avatar, label, metadata, seen_at, created_at, updated_at`

// insertContact inserts the record unless its (bot, primary key) exists, and reports
// whether it did. Under concurrent first visits the unique constraint lets one insert
// through; the others wait for it and find the row.
func (s *Store) insertContact(ctx context.Context, tx *sql.Tx, r *Record) (bool, error) {
	metadata, err := json.Marshal(r.Metadata)
	if err != nil {
		return false, fmt.Errorf("contactstore: metadata: %w", err)
	}
	err = tx.QueryRowContext(ctx, `INSERT INTO contacts (`+contactColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		ON CONFLICT (bot_id, identify_by, match_key) DO NOTHING
		RETURNING id`,
		r.Bot, r.IdentifyBy, r.Key, r.ExternalID, r.Name, r.Email, r.PhoneNumber,
		r.CountryCode, r.Avatar, r.Label, string(metadata),
		r.SeenAt.UnixNano(), r.CreatedAt.UnixNano(), r.UpdatedAt.UnixNano(),
	).Scan(&r.ID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("contactstore: inserting a contact: %w", err)
	}
	return true, nil
}

// lockContact reads a contact and keeps it locked until the transaction ends.
func (s *Store) lockContact(ctx context.Context, tx *sql.Tx, bot, identifyBy, key string) (Record, error) {
	row := tx.QueryRowContext(ctx, `SELECT id, `+contactColumns+` FROM contacts
		WHERE bot_id = $1 AND identify_by = $2 AND match_key = $3`+s.dialect.lockRow,
		bot, identifyBy, key)
	r, err := scanContact(row)
	if err != nil {
		return Record{}, fmt.Errorf("contactstore: reading a contact: %w", err)
	}
	return r, nil
}

// writeContact writes what Save decided.
func (s *Store) writeContact(ctx context.Context, tx *sql.Tx, res Result) error {
	r := res.Contact
	metadata, err := json.Marshal(r.Metadata)
	if err != nil {
		return fmt.Errorf("contactstore: metadata: %w", err)
	}
	// seen_at moves on even when nothing changed, so that an older answer that comes
	// afterwards is recognised as older.
	_, err = tx.ExecContext(ctx, `UPDATE contacts SET external_id = $1, name = $2, email = $3,
		phone_number = $4, country_code = $5, avatar = $6, label = $7, metadata = $8,
		seen_at = $9, updated_at = $10 WHERE id = $11 AND seen_at <= $9`,
		r.ExternalID, r.Name, r.Email, r.PhoneNumber, r.CountryCode, r.Avatar, r.Label,
		string(metadata), r.SeenAt.UnixNano(), r.UpdatedAt.UnixNano(), r.ID)
	if err != nil {
		return fmt.Errorf("contactstore: updating a contact: %w", err)
	}
	return nil
}

type scanner interface{ Scan(...any) error }

func scanContact(row scanner) (Record, error) {
	var r Record
	var metadata string
	var seen, created, updated int64
	err := row.Scan(&r.ID, &r.Bot, &r.IdentifyBy, &r.Key, &r.ExternalID, &r.Name, &r.Email,
		&r.PhoneNumber, &r.CountryCode, &r.Avatar, &r.Label, &metadata, &seen, &created, &updated)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(metadata), &r.Metadata); err != nil {
		return r, fmt.Errorf("metadata: %w", err)
	}
	if r.Metadata == nil {
		r.Metadata = map[string]any{}
	}
	r.SeenAt, r.CreatedAt, r.UpdatedAt = time.Unix(0, seen), time.Unix(0, created), time.Unix(0, updated)
	return r, nil
}
