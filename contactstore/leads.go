package contactstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Lead is what an anonymous visitor typed in the "Collect Information" form: unverified,
// kept apart from the contacts.
type Lead struct {
	ID  int64
	Bot string
	// Visitor is the anonymous visitor's id, chosen by the backend (a random id the widget
	// keeps, for example). A lead is found by it and by nothing else.
	Visitor   string
	Name      string
	Email     string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Limits on what a visitor types, in characters.
const (
	MaxVisitorLength = 128
	MaxNameLength    = 200
	MaxEmailLength   = 320
)

// ErrInvalidLead means a lead's visitor id is missing, or a field is too long or not UTF-8.
var ErrInvalidLead = errors.New("contactstore: invalid lead")

// SaveLead stores what an anonymous visitor typed, under the bot and visitor: a visitor
// who types again replaces their own lead. A lead is never matched with a contact, by
// email or otherwise: whatever email is typed, no verified contact is found, changed,
// merged or shown, and the lead holds only what was typed. A backend that wants to link
// a lead to a contact does it when the visitor is verified, never from what they typed.
func (s *Store) SaveLead(ctx context.Context, bot, visitor, name, email string) (Lead, error) {
	name, email = strings.TrimSpace(name), strings.TrimSpace(email)
	if err := checkLead(bot, visitor, name, email); err != nil {
		return Lead{}, err
	}
	now := s.now().UnixNano()
	var l Lead
	var created, updated int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO leads (bot_id, visitor, name, email, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $5)
			ON CONFLICT (bot_id, visitor) DO UPDATE SET name = excluded.name, email = excluded.email, updated_at = excluded.updated_at
			RETURNING id, bot_id, visitor, name, email, created_at, updated_at`,
			bot, visitor, name, email, now,
		).Scan(&l.ID, &l.Bot, &l.Visitor, &l.Name, &l.Email, &created, &updated)
	})
	if err != nil {
		return Lead{}, fmt.Errorf("contactstore: saving a lead: %w", err)
	}
	l.CreatedAt, l.UpdatedAt = time.Unix(0, created), time.Unix(0, updated)
	return l, nil
}

// FindLead returns the lead of a visitor, or ok false.
func (s *Store) FindLead(ctx context.Context, bot, visitor string) (l Lead, ok bool, err error) {
	var created, updated int64
	err = s.db.QueryRowContext(ctx, `SELECT id, bot_id, visitor, name, email, created_at, updated_at
		FROM leads WHERE bot_id = $1 AND visitor = $2`, bot, visitor,
	).Scan(&l.ID, &l.Bot, &l.Visitor, &l.Name, &l.Email, &created, &updated)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Lead{}, false, nil
	case err != nil:
		return Lead{}, false, fmt.Errorf("contactstore: reading a lead: %w", err)
	}
	l.CreatedAt, l.UpdatedAt = time.Unix(0, created), time.Unix(0, updated)
	return l, true, nil
}

func checkLead(bot, visitor, name, email string) error {
	for _, f := range []struct {
		what  string
		value string
		max   int
	}{
		{"bot", bot, MaxVisitorLength}, {"visitor", visitor, MaxVisitorLength},
		{"name", name, MaxNameLength}, {"email", email, MaxEmailLength},
	} {
		if !utf8.ValidString(f.value) || utf8.RuneCountInString(f.value) > f.max {
			return fmt.Errorf("%w: %s too long or not UTF-8", ErrInvalidLead, f.what)
		}
	}
	if bot == "" || visitor == "" {
		return fmt.Errorf("%w: a lead needs a bot and a visitor id", ErrInvalidLead)
	}
	return nil
}
