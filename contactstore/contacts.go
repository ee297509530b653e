package contactstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/custom-auth/custom_auth/contact"
)

// Outcome is what Save did.
type Outcome string

// What Save did with a verified contact.
const (
	// Created: the first visit of this contact to this bot.
	Created Outcome = "created"
	// Updated: the contact was known and the latest answer changed some of its details.
	Updated Outcome = "updated"
	// Unchanged: the contact was known and the answer changed nothing, or it was older
	// than the stored one.
	Unchanged Outcome = "unchanged"
)

// Seen is a contact the gateway verified on one request.
type Seen struct {
	// Bot is the bot the request was for; contacts of different bots never mix.
	Bot string
	// Contact is the verified contact; its IdentifyBy names the primary key.
	Contact *contact.Contact
	// At is when the identity API answered: the assertion's iat, or, when the backend
	// reads the headers only, the time it read them. An answer older than the stored
	// one changes nothing. Zero means now.
	At time.Time
}

// Record is a stored contact.
type Record struct {
	// ID is the store's id of the contact.
	ID  int64
	Bot string
	// IdentifyBy is the primary key ("id", "email" or "phone_number") and Key its
	// value as matched (see MatchKey).
	IdentifyBy string
	Key        string
	// ExternalID is the identity API's data.id.
	ExternalID  string
	Name        string
	Email       string
	PhoneNumber string
	CountryCode string
	Avatar      string
	Label       string
	// Metadata is data.metadata merged over the visits (see Store.Save); never nil.
	Metadata map[string]any
	// SeenAt is the time of the answer the record holds (Seen.At).
	SeenAt    time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Result is what Save did and the contact as stored afterwards.
type Result struct {
	Outcome Outcome
	Contact Record
}

// ErrNoKey means the contact has no value for its primary key, or no known primary key.
var ErrNoKey = errors.New("contactstore: the contact has no primary-key value")

// Save creates the contact on its first visit to the bot and updates it on a later one,
// in one transaction: the row is inserted if its (bot, primary key) is new, and
// otherwise locked, merged and written.
//
// A field of the latest answer replaces the stored one; a field it leaves out or empty
// keeps the stored value, as the gateway cannot tell a field removed from one not sent.
// Metadata merges key by key in the same way: a key of the latest answer replaces the
// stored one, a key set to null is removed, and keys the answer does not mention stay.
// A source that sends fewer keys (a JWT with no metadata claim, an API that sends only
// the current order) thus never wipes what an earlier answer brought, and an API
// removes a key by saying so. An answer older than the stored one (Seen.At) changes
// nothing: Unchanged.
func (s *Store) Save(ctx context.Context, seen Seen) (Result, error) {
	incoming, err := s.recordOf(seen)
	if err != nil {
		return Result{}, err
	}
	var res Result
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		created, err := s.insertContact(ctx, tx, &incoming)
		if err != nil {
			return err
		}
		if created {
			res = Result{Outcome: Created, Contact: incoming}
			return nil
		}
		stored, err := s.lockContact(ctx, tx, incoming.Bot, incoming.IdentifyBy, incoming.Key)
		if err != nil {
			return err
		}
		res = merge(stored, incoming, seen.Contact.Metadata)
		return s.writeContact(ctx, tx, res)
	})
	return res, err
}

// recordOf is the record a first visit would create.
func (s *Store) recordOf(seen Seen) (Record, error) {
	c := seen.Contact
	if seen.Bot == "" || c == nil {
		return Record{}, errors.New("contactstore: a seen contact needs a bot and a contact")
	}
	key, err := MatchKey(c)
	if err != nil {
		return Record{}, err
	}
	now := s.now()
	at := seen.At
	if at.IsZero() {
		at = now
	}
	metadata := maps.Clone(c.Metadata)
	if metadata == nil {
		metadata = map[string]any{}
	}
	maps.DeleteFunc(metadata, func(_ string, v any) bool { return v == nil })
	return Record{
		Bot: seen.Bot, IdentifyBy: c.IdentifyBy, Key: key,
		ExternalID: c.ID, Name: c.Name, Email: c.Email, PhoneNumber: c.PhoneNumber,
		CountryCode: c.CountryCode, Avatar: c.Avatar, Label: c.Label, Metadata: metadata,
		SeenAt: at, CreatedAt: now, UpdatedAt: now,
	}, nil
}

// MatchKey is the value a contact is matched by, for its IdentifyBy:
//   - id: data.id as the API sent it, trimmed of surrounding spaces;
//   - email: lower-cased, so that B@Example.com and b@example.com are one contact (the
//     gateway compares emails the same way);
//   - phone_number: its digits, with the leading '+' if any, after the country code's
//     digits and a colon ("84:0912345678"); spaces, dashes, dots and brackets are
//     dropped. Numbers are not rewritten to E.164: whether 0912345678 under +84 is
//     +84912345678 depends on the country's trunk prefix, and two people merged by a
//     wrong guess are worse than one person kept twice. An identity API that sends one
//     form always is matched always.
func MatchKey(c *contact.Contact) (string, error) {
	var key string
	switch c.IdentifyBy {
	case "id":
		key = strings.TrimSpace(c.ID)
	case "email":
		key = strings.ToLower(strings.TrimSpace(c.Email))
	case "phone_number":
		if number := phoneDigits(c.PhoneNumber); number != "" {
			key = strings.TrimPrefix(phoneDigits(c.CountryCode), "+") + ":" + number
		}
	default:
		return "", fmt.Errorf("%w: unknown identify_by %q", ErrNoKey, c.IdentifyBy)
	}
	if key == "" {
		return "", fmt.Errorf("%w (%s)", ErrNoKey, c.IdentifyBy)
	}
	return key, nil
}

// phoneDigits keeps the digits of a phone number and a leading '+'.
func phoneDigits(s string) string {
	s = strings.TrimSpace(s)
	var b strings.Builder
	for i, r := range s {
		if r >= '0' && r <= '9' || r == '+' && i == 0 {
			b.WriteRune(r)
		}
	}
	if b.String() == "+" {
		return ""
	}
	return b.String()
}

// merge applies the latest answer, and its metadata as sent (nulls included), to the
// stored record (see Save).
func merge(stored, incoming Record, metadata map[string]any) Result {
	if incoming.SeenAt.Before(stored.SeenAt) {
		return Result{Outcome: Unchanged, Contact: stored}
	}
	merged := stored
	merged.SeenAt = incoming.SeenAt
	for _, f := range []struct {
		dst *string
		src string
	}{
		{&merged.ExternalID, incoming.ExternalID}, {&merged.Name, incoming.Name},
		{&merged.Email, incoming.Email}, {&merged.PhoneNumber, incoming.PhoneNumber},
		{&merged.CountryCode, incoming.CountryCode}, {&merged.Avatar, incoming.Avatar},
		{&merged.Label, incoming.Label},
	} {
		if f.src != "" {
			*f.dst = f.src
		}
	}
	merged.Metadata = maps.Clone(stored.Metadata)
	for k, v := range metadata {
		if v == nil {
			delete(merged.Metadata, k)
		} else {
			merged.Metadata[k] = v
		}
	}
	if sameDetails(stored, merged) {
		return Result{Outcome: Unchanged, Contact: merged}
	}
	merged.UpdatedAt = incoming.UpdatedAt
	return Result{Outcome: Updated, Contact: merged}
}

// sameDetails reports whether two records hold the same contact details.
func sameDetails(a, b Record) bool {
	ma, _ := json.Marshal(a.Metadata)
	mb, _ := json.Marshal(b.Metadata)
	return a.ExternalID == b.ExternalID && a.Name == b.Name && a.Email == b.Email &&
		a.PhoneNumber == b.PhoneNumber && a.CountryCode == b.CountryCode &&
		a.Avatar == b.Avatar && a.Label == b.Label && string(ma) == string(mb)
}
