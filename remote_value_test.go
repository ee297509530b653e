package customauth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// leaving is a cached value that counts the times it is told it left the cache.
type leaving struct{ times atomic.Int32 }

func (l *leaving) evicted() { l.times.Add(1) }

// TestCacheTellsValuesTheyLeft: a value that implements evicted is told exactly once
// that it left the cache, whatever the reason, at once, with no garbage collection.
func TestCacheTellsValuesTheyLeft(t *testing.T) {
	c, err := newCaches("evicted-test", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	store := func(key string, cost int64) *leaving {
		v := new(leaving)
		c.store(key, v, cost, now, now)
		return v
	}
	replaced, kept := store("replaced", 100), store("kept", 100)
	store("replaced", 100)
	deleted := store("deleted", 100)
	c.remove("deleted")
	closed := store("closed", 100)
	for name, v := range map[string]*leaving{"replaced": replaced, "deleted": deleted, "still cached": kept} {
		want := int32(1)
		if v == kept {
			want = 0
		}
		if got := v.times.Load(); got != want {
			t.Errorf("%s: told %d times, want %d", name, got, want)
		}
	}
	c.Destruct()
	if kept.times.Load() != 1 || closed.times.Load() != 1 || replaced.times.Load() != 1 {
		t.Errorf("cache closed: told %d and %d times, want 1 each", kept.times.Load(), closed.times.Load())
	}

	small, err := newCaches("evicted-test-small", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer small.Destruct()
	refused := new(leaving)
	small.store("too-large", refused, 2<<20, now, now) // over the whole cache
	if got := refused.times.Load(); got != 1 {
		t.Errorf("refused: told %d times, want 1", got)
	}
}

// testRemoteValue is a remoteValue over an API that tests control: fetch answers
// the next value or fails.
type testRemoteValue struct {
	remoteValue[*leaving]
	clk   *clock
	calls atomic.Int32
	mu    sync.Mutex
	fail  error
	hang  chan struct{}
}

func newTestRemoteValue(t *testing.T) *testRemoteValue {
	c, err := newCaches(t.Name(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Destruct() })
	clk := newClock()
	tv := &testRemoteValue{clk: clk}
	env := &environment{ctx: t.Context(), caches: c, now: clk.Now, metrics: newProcessMetrics(), warned: map[string]time.Time{},
		refreshSlots: newCallSlots(maxBackgroundRefreshes)}
	tv.remoteValue = remoteValue[*leaving]{env: env, background: t.Context(), slots: env.refreshSlots, ttl: time.Minute, failed: func(string, error) {},
		fetch: func(ctx context.Context, _ string, _ *leaving) (*leaving, int64, error) {
			tv.calls.Add(1)
			tv.mu.Lock()
			fail, hang := tv.fail, tv.hang
			tv.mu.Unlock()
			if hang != nil {
				select {
				case <-hang:
				case <-ctx.Done():
					return nil, 0, ctx.Err()
				}
			}
			if fail != nil {
				return nil, 0, fail
			}
			return new(leaving), 100, nil
		}}
	return tv
}

func (tv *testRemoteValue) failing(err error) {
	tv.mu.Lock()
	tv.fail = err
	tv.mu.Unlock()
}

// TestRemoteValueHoldsBackAfterFailure: after a failed fetch the API is not asked
// again for holdBackAfterFailure, neither by requests nor by background refreshes;
// the last good value serves meanwhile, and a value never fetched is the failure.
func TestRemoteValueHoldsBackAfterFailure(t *testing.T) {
	ctx := context.Background()
	tv := newTestRemoteValue(t)
	down := errors.New("API down")

	tv.failing(down)
	for range 3 {
		if v, err := tv.get(ctx, "k"); v != nil || !errors.Is(err, down) {
			t.Fatalf("never fetched, API down: %v, %v", v, err)
		}
	}
	if n := tv.calls.Load(); n != 1 {
		t.Fatalf("fetches while held back = %d, want 1", n)
	}
	tv.clk.advance(holdBackAfterFailure)
	tv.failing(nil)
	first, err := tv.get(ctx, "k")
	if first == nil || err != nil || tv.calls.Load() != 2 {
		t.Fatalf("after the hold-back: %v, %v, %d fetches", first, err, tv.calls.Load())
	}

	// Old, and the refresh fails: the value at hand serves, and the failed refresh
	// holds back the next one, although the value is still old.
	tv.failing(down)
	tv.clk.advance(time.Minute)
	for i := range 5 {
		if v, err := tv.get(ctx, "k"); v != first || err != nil {
			t.Fatalf("request %d while refreshes fail: %v, %v", i, v, err)
		}
		eventually(t, "the background refresh", func() bool { return tv.refreshesUnderWay() == 0 })
	}
	if n := tv.calls.Load(); n != 3 {
		t.Fatalf("background refreshes while held back = %d, want 1", n-2)
	}
	if err := tv.lastError("k"); !errors.Is(err, down) {
		t.Errorf("last error %v", err)
	}
	tv.clk.advance(holdBackAfterFailure)
	tv.failing(nil)
	tv.get(ctx, "k")
	eventually(t, "the refresh after the hold-back", func() bool { return tv.calls.Load() == 4 && tv.refreshesUnderWay() == 0 })
	if v, _ := tv.get(ctx, "k"); v == first || v == nil {
		t.Errorf("the refreshed value is not served")
	}
	if first.times.Load() != 1 {
		t.Errorf("the replaced value was told %d times that it left", first.times.Load())
	}

	// A call not made for max_in_flight holds nothing back.
	tv.failing(fmt.Errorf("calling: %w", errAllSlotsBusy))
	tv.get(ctx, "busy")
	tv.failing(nil)
	if v, err := tv.get(ctx, "busy"); v == nil || err != nil || tv.calls.Load() != 6 {
		t.Errorf("after a call refused for the bound: %v, %v, %d fetches", v, err, tv.calls.Load())
	}
}

// TestRemoteValueFirstFetch: concurrent requests for a value never fetched wait for
// one fetch; one who leaves stops waiting at once, and the fetch goes on for the
// others.
func TestRemoteValueFirstFetch(t *testing.T) {
	tv := newTestRemoteValue(t)
	hang := make(chan struct{})
	tv.hang = hang
	gone, leave := context.WithCancel(context.Background())
	left := make(chan error, 1)
	go func() {
		_, err := tv.get(gone, "k")
		left <- err
	}()
	eventually(t, "the fetch to start", func() bool { return tv.calls.Load() == 1 })
	var wg sync.WaitGroup
	got := make([]*leaving, 5)
	for i := range got {
		wg.Go(func() { got[i], _ = tv.get(context.Background(), "k") })
	}
	leave()
	select {
	case err := <-left:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the visitor who left: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a visitor who left still waits")
	}
	close(hang)
	wg.Wait()
	for i, v := range got {
		if v == nil || v != got[0] {
			t.Errorf("request %d got %v", i, v)
		}
	}
	if n := tv.calls.Load(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
}

// TestRemoteValueRefreshesAreBounded: the refreshes under way are at most
// maxBackgroundRefreshes, however many values are old.
func TestRemoteValueRefreshesAreBounded(t *testing.T) {
	tv := newTestRemoteValue(t)
	const many = maxBackgroundRefreshes + 8
	for i := range many {
		tv.get(context.Background(), fmt.Sprint(i))
	}
	hang := make(chan struct{})
	tv.hang = hang
	defer close(hang)
	tv.clk.advance(time.Minute)
	for i := range many {
		tv.get(context.Background(), fmt.Sprint(i))
	}
	eventually(t, "the refreshes to start", func() bool { return tv.calls.Load() == many+maxBackgroundRefreshes })
	if n := tv.refreshesUnderWay(); n != maxBackgroundRefreshes {
		t.Errorf("%d refreshes under way, want %d", n, maxBackgroundRefreshes)
	}
}

// refreshesUnderWay counts the background refreshes under way.
func (rv *remoteValue[T]) refreshesUnderWay() int {
	n := 0
	rv.refreshing.Range(func(any, any) bool {
		n++
		return true
	})
	return n
}
