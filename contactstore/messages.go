package contactstore

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Conversation names whose messages these are: a verified contact's, or an anonymous
// visitor's. The two never share messages: a visitor who types a contact's email is
// still the visitor.
type Conversation struct {
	bot string
	key string
}

// ContactConversation is the conversation of a verified contact, kept across visits.
func ContactConversation(r Record) Conversation {
	return Conversation{bot: r.Bot, key: "contact:" + strconv.FormatInt(r.ID, 10)}
}

// VisitorConversation is the conversation of an anonymous visitor of a bot.
func VisitorConversation(bot, visitor string) Conversation {
	return Conversation{bot: bot, key: "visitor:" + visitor}
}

// Message is one message of a conversation.
type Message struct {
	ID int64
	// From is who wrote it, e.g. "visitor" or "agent".
	From string
	Text string
	At   time.Time
}

// AddMessage appends a message to a conversation.
func (s *Store) AddMessage(ctx context.Context, c Conversation, from, text string) (Message, error) {
	if c.bot == "" || c.key == "" {
		return Message{}, fmt.Errorf("contactstore: a message needs a conversation")
	}
	m := Message{From: from, Text: text, At: s.now()}
	err := s.db.QueryRowContext(ctx, `INSERT INTO messages (bot_id, conversation, sender, body, sent_at)
		VALUES ($1, $2, $3, $4, $5) RETURNING id`, c.bot, c.key, from, text, m.At.UnixNano()).Scan(&m.ID)
	if err != nil {
		return Message{}, fmt.Errorf("contactstore: adding a message: %w", err)
	}
	return m, nil
}

// Messages returns the last limit messages of a conversation, oldest first.
func (s *Store) Messages(ctx context.Context, c Conversation, limit int) ([]Message, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, sender, body, sent_at FROM (
			SELECT id, sender, body, sent_at FROM messages
			WHERE bot_id = $1 AND conversation = $2 ORDER BY id DESC LIMIT $3
		) AS latest ORDER BY id`, c.bot, c.key, limit)
	if err != nil {
		return nil, fmt.Errorf("contactstore: reading messages: %w", err)
	}
	defer rows.Close()
	var messages []Message
	for rows.Next() {
		var m Message
		var at int64
		if err := rows.Scan(&m.ID, &m.From, &m.Text, &at); err != nil {
			return nil, fmt.Errorf("contactstore: reading messages: %w", err)
		}
		m.At = time.Unix(0, at)
		messages = append(messages, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("contactstore: reading messages: %w", err)
	}
	return messages, nil
}
