package customauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// sharedPrefix starts every name custom_auth uses in the shared cache.
const sharedPrefix = "custom_auth:v1:"

// errNotReady: the shared cache has not been ready (connected, subscribed to the purge
// channel and its purge log read) since the gateway started.
var errNotReady = errors.New("the shared cache has not been ready since the gateway started (connected and subscribed to the purge channel)")

// How purges reach every gateway of a fleet.
//
// The gateway that takes a purge applies it at once and keeps it (takenPurge). It
// records it in the purge log, a sorted set of the purges of the last purgeLogKeep
// (deleting the purged token's verdicts with it), then announces it on the purge
// channel; every subscribed gateway applies it and acknowledges it on the taker's
// channel, and the taker answers once every gateway that received it has. A purge the
// server could not record (it is down) stays with the taker, which records and
// announces it again every second while subscribed and at each new subscription, so
// it reaches the fleet once the server is back. Each subscription reads the log after
// subscribing, so no purge falls between the two; while a gateway is not subscribed,
// its marks may be missing some, and it reads no verdict from the shared cache.
//
// A server that lost its data (restarted without persistence, or failed over before
// replicating) is told by its epoch, a random value each gateway checks when it
// subscribes: when it changed, every gateway records and announces again every purge
// it took within purgeLogKeep. After any new subscription, those of the last
// purgeLogSlack are announced again too, for writes lost to a failover.
//
// A purge lives in the memory of the gateway that took it: if that gateway restarts
// before it could record it, the rest of the fleet never hears of it. That gateway
// answered 503, which says so; the caller sends the purge again.
const (
	// purgeChannel announces purges to every gateway; each answers on the channel of
	// the gateway that purged, purgeAckPrefix + its link id. They share a slot
	// ({purge}), so that one sharded subscription takes both on a cluster.
	purgeChannel   = sharedPrefix + "{purge}"
	purgeAckPrefix = sharedPrefix + "{purge}:ack:"
	// purgeLogKey holds the purges of the last purgeLogKeep, by time: a gateway that
	// (re)subscribes reads the purges it may have missed there.
	purgeLogKey  = sharedPrefix + "purges"
	purgeLogKeep = time.Hour
	// purgeLogSlack is read again before the moment a subscription was lost: a
	// connection may be dead for a while before it is seen to be.
	purgeLogSlack = time.Minute
	// epochKey holds the server's epoch: a value set once, which a server that lost
	// its data no longer has.
	epochKey = sharedPrefix + "epoch"
	// maxTakenPurges bounds the purges a link keeps to announce again.
	maxTakenPurges = 10_000
)

// fleetPurges is one link's side of the purge protocol: the purges this gateway took,
// kept until the fleet has them, the acknowledgements it waits for, and the marks it
// sets for every purge it hears of.
type fleetPurges struct {
	// id names the link on the purge channel: acknowledgements of its purges come
	// back on purgeAckPrefix + id.
	id      string
	server  *pubsubServer // the link's; set before ready is closed
	ready   <-chan struct{}
	marks   *purgeMarks
	secrets urlSecrets
	now     func() time.Time
	logger  *zap.Logger

	// epoch is the server's epoch when the link last synced: a server that answers
	// another one lost its data. Only the link's background loop uses it.
	epoch string
	// lostAt is when the last subscription that was synced ended (Unix
	// nanoseconds); zero until one did.
	lostAt atomic.Int64

	acksMu sync.Mutex
	acks   map[string]*purgeAcks // by purge id, the purges of this link in flight

	takenMu         sync.Mutex
	taken           []*takenPurge // the purges this link took, oldest first
	droppedWarnedAt time.Time     // the last warning of purges dropped undelivered, at most one a minute
}

// pubsubServer is a link's connection to the shared cache, as the purge protocol uses
// it.
type pubsubServer struct {
	client rueidis.Client
	// sharded is true on a cluster, where purges travel by sharded pub/sub.
	sharded bool
}

// publish sends a message on a channel of the purge channel's slot: by sharded
// pub/sub on a cluster, where a plain PUBLISH would count only the subscribers of the
// node it reached, and by plain pub/sub elsewhere. It returns how many received it.
func (s *pubsubServer) publish(ctx context.Context, channel, msg string) (int64, error) {
	c := s.client
	cmd := c.B().Publish().Channel(channel).Message(msg).Build()
	if s.sharded {
		cmd = c.B().Spublish().Channel(channel).Message(msg).Build()
	}
	return c.Do(ctx, cmd).AsInt64()
}

// subscribeCommand subscribes to the purge channel and a link's acknowledgements,
// which share a slot.
func (s *pubsubServer) subscribeCommand(dc rueidis.DedicatedClient, linkID string) rueidis.Completed {
	if s.sharded {
		return dc.B().Ssubscribe().Channel(purgeChannel, purgeAckPrefix+linkID).Build()
	}
	return dc.B().Subscribe().Channel(purgeChannel, purgeAckPrefix+linkID).Build()
}

// takenPurge is a purge this gateway took, kept to be announced again.
type takenPurge struct {
	notice      purgeNotice
	msg         string
	verdictKeys []string
	recorded    atomic.Bool // the purge log has it, as far as this link knows
}

// take keeps a purge this link announces, and forgets those older than the log.
func (fp *fleetPurges) take(n purgeNotice, msg string, verdictKeys []string) *takenPurge {
	p := &takenPurge{notice: n, msg: msg, verdictKeys: verdictKeys}
	cutoff := fp.now().Add(-purgeLogKeep).UnixNano()
	fp.takenMu.Lock()
	defer fp.takenMu.Unlock()
	drop, undelivered := 0, 0
	for drop < len(fp.taken) && (fp.taken[drop].notice.At < cutoff || len(fp.taken)-drop >= maxTakenPurges) {
		if !fp.taken[drop].recorded.Load() {
			undelivered++
		}
		drop++
	}
	if now := fp.now(); undelivered > 0 && now.Sub(fp.droppedWarnedAt) >= time.Minute {
		fp.droppedWarnedAt = now
		fp.logger.Warn("shared cache: purges the fleet may not have are no longer kept to announce again",
			zap.Int("purges", undelivered), zap.Int("kept", maxTakenPurges))
	}
	fp.taken = append(fp.taken[drop:], p)
	return p
}

// catchUp makes a new subscription's marks complete: it reads the purge log, and
// delivers the purges taken here that the server may lack (forgetRecorded).
func (fp *fleetPurges) catchUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, purgeTimeout)
	defer cancel()
	c := fp.server.client
	res := c.DoMulti(ctx,
		c.B().Set().Key(epochKey).Value(randomID()).Nx().Build(),
		c.B().Get().Key(epochKey).Build())
	epoch, err := res[1].ToString()
	if err != nil {
		return fp.secrets.scrub(err)
	}
	lost := fp.epoch != "" && epoch != fp.epoch
	if lost {
		fp.logger.Warn("shared cache: the server lost its data; the purges taken here are announced again")
	}
	fp.epoch = epoch
	fp.forgetRecorded(lost)
	if err := fp.readPurgeLog(ctx, lost); err != nil {
		return err
	}
	fp.deliver(ctx)
	if fp.lostAt.Load() != 0 {
		fp.logger.Info("shared cache: purge channel back; the purges announced meanwhile were read from the purge log")
	}
	return nil
}

// forgetRecorded makes the purges taken here that the server may have lost due again:
// every one when it lost its data, else those of the last purgeLogSlack, whose writes
// a failover may have lost. deliver then records and announces them, at once and on
// every tick, until the server has each.
func (fp *fleetPurges) forgetRecorded(all bool) {
	since := fp.now().Add(-purgeLogSlack).UnixNano()
	fp.takenMu.Lock()
	defer fp.takenMu.Unlock()
	for _, p := range fp.taken {
		if all || p.notice.At >= since {
			p.recorded.Store(false)
		}
	}
}

// deliver records and announces the purges taken here that the log does not have.
func (fp *fleetPurges) deliver(ctx context.Context) {
	fp.takenMu.Lock()
	var due []*takenPurge
	for _, p := range fp.taken {
		if !p.recorded.Load() {
			due = append(due, p)
		}
	}
	fp.takenMu.Unlock()
	for _, p := range due {
		err := fp.record(ctx, p)
		if err == nil {
			_, err = fp.publish(ctx, purgeChannel, p.msg)
		}
		if err != nil {
			fp.logger.Debug("shared cache: a purge is not delivered yet", zap.Error(err))
			return
		}
	}
}

// record writes a purge to the purge log, trims the log, and deletes the purged
// token's verdicts. Every command names one key: on a cluster each goes to its slot,
// and none is sent with a keyless one (which rueidis refuses).
func (fp *fleetPurges) record(ctx context.Context, p *takenPurge) error {
	c := fp.server.client
	cmds := make(rueidis.Commands, 0, 3+len(p.verdictKeys))
	for _, key := range p.verdictKeys {
		cmds = append(cmds, c.B().Del().Key(key).Build())
	}
	cmds = append(cmds,
		c.B().Zadd().Key(purgeLogKey).ScoreMember().ScoreMember(float64(time.Unix(0, p.notice.At).UnixMilli()), p.msg).Build(),
		c.B().Zremrangebyscore().Key(purgeLogKey).Min("-inf").Max(strconv.FormatInt(fp.now().Add(-purgeLogKeep).UnixMilli(), 10)).Build(),
		c.B().Pexpire().Key(purgeLogKey).Milliseconds(purgeLogKeep.Milliseconds()).Build(),
	)
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return fp.secrets.scrub(err)
		}
	}
	p.recorded.Store(true)
	return nil
}

// readPurgeLog applies the purges announced while this link was not subscribed: the
// whole log until the link was first synced or when the server lost its data, else
// from a little before the last synced subscription was lost. Marks older than the
// log may be missing, so a whole read raises the floor to its start; and a read cut
// short at maxMarks raises it to its oldest entry.
func (fp *fleetPurges) readPurgeLog(ctx context.Context, whole bool) error {
	since := fp.now().Add(-purgeLogKeep)
	if lost := fp.lostAt.Load(); !whole && lost != 0 && time.Unix(0, lost).Add(-purgeLogSlack).After(since) {
		since = time.Unix(0, lost).Add(-purgeLogSlack)
	} else {
		whole = true
	}
	// The newest maxMarks at most, as many as the marks keep: older ones are
	// covered by the floor instead.
	c := fp.server.client
	entries, err := c.Do(ctx, c.B().Zrange().Key(purgeLogKey).
		Min("+inf").Max(strconv.FormatInt(since.UnixMilli(), 10)).Byscore().Rev().Limit(0, maxMarks).Build()).AsStrSlice()
	if err != nil {
		return fp.secrets.scrub(err)
	}
	oldest := time.Time{}
	for _, entry := range slices.Backward(entries) { // oldest first, as marks are set
		var n purgeNotice
		if json.Unmarshal([]byte(entry), &n) != nil {
			continue
		}
		if ref, err := n.markRef(); err == nil {
			fp.marks.set(ref)
			if oldest.IsZero() {
				oldest = ref.at
			}
		}
	}
	if len(entries) == maxMarks && !oldest.IsZero() {
		fp.marks.raiseFloor(oldest)
	} else if whole {
		fp.marks.raiseFloor(since)
	}
	return nil
}

// onMessage applies a purge announced by a gateway and acknowledges it, or counts an
// acknowledgement of one of this link's purges.
func (fp *fleetPurges) onMessage(m rueidis.PubSubMessage) {
	if id, ok := strings.CutPrefix(m.Channel, purgeAckPrefix); ok && id == fp.id {
		fp.acked(m.Message)
		return
	}
	var n purgeNotice
	if json.Unmarshal([]byte(m.Message), &n) != nil {
		return
	}
	ref, err := n.markRef()
	if err != nil {
		return
	}
	fp.marks.set(ref)
	if n.Reply == "" || !strings.HasPrefix(n.Reply, purgeAckPrefix) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), purgeTimeout)
	defer cancel()
	if _, err := fp.publish(ctx, n.Reply, n.ID+" "+fp.id); err != nil {
		fp.logger.Warn("shared cache: cannot acknowledge a purge", zap.Error(fp.secrets.scrub(err)))
	}
}

// publish publishes through the link's server, with the URL's secrets kept out of
// the error.
func (fp *fleetPurges) publish(ctx context.Context, channel, msg string) (int64, error) {
	n, err := fp.server.publish(ctx, channel, msg)
	return n, fp.secrets.scrub(err)
}

// purgeAcks counts the gateways that applied a purge. A purge may reach a gateway
// twice (announced, and delivered again while its record was under way), so each
// gateway counts once.
type purgeAcks struct {
	count  atomic.Int64
	signal chan struct{}   // one pending wake-up at most
	from   map[string]bool // the links that acknowledged; under fleetPurges.acksMu
}

// acked counts an acknowledgement: "<purge id> <link id of the gateway>", or the
// purge id alone from a gateway of an earlier version, counted each time.
func (fp *fleetPurges) acked(msg string) {
	id, from, _ := strings.Cut(msg, " ")
	fp.acksMu.Lock()
	acks := fp.acks[id]
	repeated := acks != nil && from != "" && acks.from[from]
	if acks != nil && from != "" {
		acks.from[from] = true
	}
	fp.acksMu.Unlock()
	if acks == nil || repeated {
		return
	}
	acks.count.Add(1)
	select {
	case acks.signal <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// expectAcks starts counting the acknowledgements of a purge, which may arrive before
// PUBLISH answers how many to expect; the returned func stops.
func (fp *fleetPurges) expectAcks(id string) (*purgeAcks, func()) {
	acks := &purgeAcks{signal: make(chan struct{}, 1), from: map[string]bool{}}
	fp.acksMu.Lock()
	fp.acks[id] = acks
	fp.acksMu.Unlock()
	return acks, func() {
		fp.acksMu.Lock()
		delete(fp.acks, id)
		fp.acksMu.Unlock()
	}
}

// announce keeps a purge until the fleet has it, records it in the shared cache (its
// log, and the deletion of the purged token's verdicts) and tells every gateway, then
// waits until each gateway that received it has applied it. It returns how many did,
// this one included. A purge it could not record is delivered later (see deliver).
func (fp *fleetPurges) announce(ctx context.Context, n purgeNotice, verdictKeys []string) (int, error) {
	n.Reply = purgeAckPrefix + fp.id
	msg, err := json.Marshal(n)
	if err != nil {
		return 0, err
	}
	p := fp.take(n, string(msg), verdictKeys)
	select {
	case <-fp.ready:
	case <-ctx.Done():
		return 0, errNotReady
	}
	acks, stop := fp.expectAcks(n.ID)
	defer stop()
	if err := fp.record(ctx, p); err != nil {
		return 0, err
	}
	receivers, err := fp.publish(ctx, purgeChannel, p.msg)
	if err != nil {
		return 0, err
	}
	for acks.count.Load() < receivers {
		select {
		case <-acks.signal:
		case <-ctx.Done():
			return int(acks.count.Load()), fmt.Errorf("%d of the %d gateways listening confirmed the purge in time", acks.count.Load(), receivers)
		}
	}
	return int(receivers), nil
}

// purgeTimeout bounds a purge: telling the fleet and hearing back from every gateway.
const purgeTimeout = 5 * time.Second

// purgeNotice is a purge as the fleet hears it, on the purge channel and in the purge
// log. It names the contact and the token by their digests only.
type purgeNotice struct {
	ID      string `json:"id"`
	Reply   string `json:"reply,omitempty"` // the channel that acknowledgements go to
	Bot     string `json:"bot"`
	Contact string `json:"contact,omitempty"` // hex contactDigest
	Token   string `json:"token,omitempty"`   // hex tokenDigest
	At      int64  `json:"at"`                // Unix nanoseconds
}

// markRef is the mark a notice sets.
func (n purgeNotice) markRef() (markRef, error) {
	ref := markRef{bot: n.Bot, scope: purgeBot, at: time.Unix(0, n.At)}
	if n.Bot == "" || n.At <= 0 {
		return ref, errors.New("purge notice without a bot or a time")
	}
	hexDigest := ""
	switch {
	case n.Contact != "" && n.Token != "":
		return ref, errors.New("purge notice with a contact and a token")
	case n.Contact != "":
		ref.scope, hexDigest = purgeContact, n.Contact
	case n.Token != "":
		ref.scope, hexDigest = purgeToken, n.Token
	default:
		return ref, nil
	}
	b, err := hex.DecodeString(hexDigest)
	if err != nil || len(b) != len(ref.digest) {
		return ref, errors.New("purge notice with a malformed digest")
	}
	copy(ref.digest[:], b)
	return ref, nil
}

// randomID names a link, and a purge, uniquely in the fleet.
func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
