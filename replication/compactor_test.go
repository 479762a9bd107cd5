package replication

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestRunCompactor(t *testing.T) {
	admin := newAdminStore(t)
	for i := 0; i < 10; i++ {
		createKey(t, admin, nil)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		RunCompactor(ctx, admin, RetentionOptions{Keep: 3, Every: 5 * time.Millisecond}, zerolog.Nop())
		close(done)
	}()
	waitFor(t, "first compaction", func() bool {
		oldest, _ := admin.OldestRevision()
		return oldest == 8
	})
	createKey(t, admin, nil)
	waitFor(t, "compaction on a later tick", func() bool {
		oldest, _ := admin.OldestRevision()
		return oldest == 9
	})
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunCompactor did not return after cancel")
	}
}

func TestRunCompactorDisabled(t *testing.T) {
	admin := newAdminStore(t)
	for i := 0; i < 5; i++ {
		createKey(t, admin, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	RunCompactor(ctx, admin, RetentionOptions{Keep: -1, Every: time.Millisecond}, zerolog.Nop())
	if oldest, _ := admin.OldestRevision(); oldest != 1 {
		t.Errorf("disabled compactor removed entries: oldest %d", oldest)
	}
}
