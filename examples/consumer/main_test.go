package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemnats/natstest"
	"github.com/idemkit/idem/idempg/pgtest"
	"github.com/idemkit/idem/internal/testenv"
)

const childArgsEnv = "CONSUMER_CHILD_ARGS"

// TestConsumerChild runs the command in a child process for the crash
// tests; run on its own it returns at once.
func TestConsumerChild(t *testing.T) {
	args := os.Getenv(childArgsEnv)
	if args == "" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := run(ctx, strings.Split(args, " "), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
}

// lines collects what the children print, by its first word.
type lines struct {
	mu    sync.Mutex
	byTag map[string][]string // "charged" → the payment ids it was printed for
	n     int                 // lines in all
}

func (l *lines) add(line string) {
	tag, rest, _ := strings.Cut(line, " ")
	id, _, _ := strings.Cut(strings.TrimLeft(rest, " "), " ")
	id = strings.TrimSuffix(id, ":")
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byTag == nil {
		l.byTag = map[string][]string{}
	}
	l.byTag[tag] = append(l.byTag[tag], id)
	l.n++
}

// waitMore waits until more than n lines have come: a child is at work.
func (l *lines) waitMore(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		l.mu.Lock()
		more := l.n > n
		l.mu.Unlock()
		if more {
			return
		}
	}
	t.Fatal("the consumer printed nothing for 30s")
}

func (l *lines) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func (l *lines) ids(tag string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.byTag[tag]...)
}

// child is a running charge process.
type child struct {
	t     *testing.T
	cmd   *exec.Cmd
	done  chan struct{} // closed once it has exited
	ready chan struct{} // closed once it consumes (and handles SIGTERM)
	err   error         // how it exited
}

func startCharge(t *testing.T, out *lines, args ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestConsumerChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childArgsEnv+"="+strings.Join(append([]string{"charge"}, args...), " "))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	c := &child{t: t, cmd: cmd, done: make(chan struct{}), ready: make(chan struct{})}
	go func() {
		defer close(c.done)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			if strings.HasPrefix(s.Text(), "charging payments") {
				close(c.ready)
				continue
			}
			out.add(s.Text())
		}
		c.err = cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-c.done })
	return c
}

// kill kills it with SIGKILL; it must have been running until then.
func (c *child) kill() { c.signal(syscall.SIGKILL) }

// stop stops it with SIGTERM, as Ctrl-C would, once it is ready for it
// (a SIGTERM before that ends it as the default action does).
func (c *child) stop() {
	select {
	case <-c.ready:
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.t.Error("the consumer did not start in 30s")
	}
	c.signal(syscall.SIGTERM)
	assert.NoError(c.t, c.err, "the consumer's exit after SIGTERM")
}

func (c *child) signal(sig syscall.Signal) {
	select {
	case <-c.done:
		c.t.Errorf("the consumer exited by itself: %v", c.err)
		return
	default:
	}
	_ = c.cmd.Process.Signal(sig)
	<-c.done
}

// publishPayments publishes n payments, about a third of them twice, and
// returns their ids.
func publishPayments(t *testing.T, url, stream string, n int) []string {
	t.Helper()
	var out strings.Builder
	require.NoError(t, run(context.Background(), []string{"publish", "-nats", url, "-stream", stream,
		"-n", fmt.Sprint(n), "-dup", "0.3", "-prefix", "p"}, &out))
	t.Log(strings.TrimSpace(out.String()))
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("p-%d", i+1)
	}
	return ids
}

// unsettled returns how many messages the durable has left to deliver
// and how many delivered wait for an ack.
func unsettled(t *testing.T, stream, durable string) (pending uint64, unacked int) {
	t.Helper()
	js, err := jetstream.New(natstest.Conn(t))
	require.NoError(t, err)
	cons, err := js.Consumer(context.Background(), stream, durable)
	require.NoError(t, err)
	info, err := cons.Info(context.Background())
	require.NoError(t, err)
	return info.NumPending, info.NumAckPending
}

// waitSettled waits until the durable has no message left to deliver or
// to be acknowledged.
func waitSettled(t *testing.T, stream, durable string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		pending, unacked := unsettled(t, stream, durable)
		if pending == 0 && unacked == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled after %v: %d pending, %d unacknowledged", within, pending, unacked)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func rounds(short, long int) int {
	if testenv.IsLong() {
		return long
	}
	return short
}

// TestKilledConsumerNeverChargesTwice kills the consumer with SIGKILL
// again and again while it charges payments (a third of them published
// twice) into its ledger file: no payment is charged twice, every payment
// acknowledged is charged exactly once, and every other one is reported
// as unknown (the consumer died between the charge and its record), or
// left orphaned in the store when the consumer died before its report,
// and was charged at most once.
func TestKilledConsumerNeverChargesTwice(t *testing.T) {
	url := natstest.URL(t)
	stream, dir := natstest.Name(t), t.TempDir()
	kills := rounds(5, 20)
	ids := publishPayments(t, url, stream, 20*kills)
	args := []string{"-nats", url, "-stream", stream, "-dir", dir, "-ack-wait", "1s", "-workers", "4", "-slow", "10ms"}
	out := &lines{}
	for range kills {
		// Kill it at a random moment after it has begun to charge.
		c := startCharge(t, out, args...)
		out.waitMore(t, out.count())
		time.Sleep(time.Duration(rand.IntN(60)) * time.Millisecond)
		c.kill()
		pending, unacked := unsettled(t, stream, "charger")
		require.NotZero(t, pending+uint64(unacked), "the consumer was killed with work left (else publish more)")
	}
	c := startCharge(t, out, args...)
	waitSettled(t, stream, "charger", time.Minute)
	c.stop()

	entries, err := readFileLedger(dir + "/ledger")
	require.NoError(t, err)
	assert.Empty(t, chargedTwice(entries), "payments charged twice")
	inLedger := map[string]bool{}
	for _, e := range entries {
		inLedger[e.ID] = true
	}
	for _, id := range out.ids("charged") {
		assert.True(t, inLedger[id], "%s was acknowledged as charged but is not in the ledger", id)
	}
	unknown := map[string]bool{}
	for _, id := range out.ids("unknown") {
		unknown[id] = true
	}
	// A consumer killed after it settled an unknown payment's message but
	// before it printed the report leaves the record to say so.
	st, err := idem.Open(idem.Options{Dir: dir + "/idem", ReadOnly: true})
	require.NoError(t, err)
	defer st.Close()
	unreported := 0
	for _, id := range ids {
		if inLedger[id] || unknown[id] {
			continue
		}
		rec, err := st.Lookup(context.Background(), "payments", "", id)
		require.NoError(t, err)
		assert.Equal(t, idem.StateOrphaned, rec.State, "%s is not in the ledger, was not reported unknown, and its record is not orphaned", id)
		unreported++
	}
	assert.Empty(t, out.ids("dropped"))
	t.Logf("%d kills: %d payments charged, %d replayed deliveries, %d deferred, %d unknown (charged at most once, %d of them in the ledger), %d more unknown whose report died with the consumer",
		kills, len(entries), len(out.ids("replayed")), len(out.ids("deferred")), len(unknown), countIn(unknown, inLedger), unreported)
	assert.NotEmpty(t, out.ids("replayed"), "duplicates and redeliveries were acknowledged without a charge")
}

func countIn(set, in map[string]bool) int {
	n := 0
	for id := range set {
		if in[id] {
			n++
		}
	}
	return n
}

// TestConsumersSharingADurableOnPostgresChargeOnce runs three consumer
// processes on one durable, with the ledger and the records in Postgres,
// and kills one of them with SIGKILL every few hundred milliseconds: each
// charge commits with its record, so every payment is charged exactly
// once and every message is acknowledged.
func TestConsumersSharingADurableOnPostgresChargeOnce(t *testing.T) {
	url, pgURL := natstest.URL(t), pgtest.URL(t)
	pool := pgtest.Pool(t)
	stream, table := natstest.Name(t), pgtest.Table(t, pool)
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+table+"_idem") })
	ids := publishPayments(t, url, stream, 300)
	args := []string{"-nats", url, "-stream", stream, "-postgres", pgURL, "-table", table, "-ack-wait", "1s", "-workers", "4", "-slow", "2ms"}
	out := &lines{}
	procs := make([]*child, 3)
	for i := range procs {
		procs[i] = startCharge(t, out, args...)
	}
	kills := rounds(4, 15)
	for range kills {
		time.Sleep(time.Duration(150+rand.IntN(300)) * time.Millisecond)
		i := rand.IntN(len(procs))
		procs[i].kill()
		procs[i] = startCharge(t, out, args...)
	}
	waitSettled(t, stream, "charger", 2*time.Minute)
	for _, c := range procs {
		c.stop()
	}

	entries, err := (&pgLedger{pool: pool, table: table}).entries(context.Background())
	require.NoError(t, err)
	assert.Empty(t, chargedTwice(entries), "payments charged twice")
	charged := map[string]bool{}
	for _, e := range entries {
		charged[e.ID] = true
	}
	for _, id := range ids {
		assert.True(t, charged[id], "%s was never charged", id)
	}
	assert.Empty(t, out.ids("unknown"))
	assert.Empty(t, out.ids("dropped"))
	t.Logf("%d kills of 3 consumers: %d charges for %d payments, %d replayed deliveries, %d deferred",
		kills, len(entries), len(ids), len(out.ids("replayed")), len(out.ids("deferred")))
}

// TestLedgerCommandFindsADoubleCharge: the ledger command says when a
// payment was charged twice, and fails.
func TestLedgerCommandFindsADoubleCharge(t *testing.T) {
	dir := t.TempDir()
	book, err := openFileLedger(dir)
	require.NoError(t, err)
	p := payment{ID: "p-1", Card: "4242-0001", AmountCents: 1250}
	require.NoError(t, book.charge(context.Background(), p))
	var out strings.Builder
	require.NoError(t, run(context.Background(), []string{"ledger", "-dir", dir}, &out))
	assert.Contains(t, out.String(), "p-1 12.50 to card 4242-0001")
	assert.Contains(t, out.String(), "1 charges, 12.50 in all\nno payment was charged twice\n")

	require.NoError(t, book.charge(context.Background(), p))
	require.NoError(t, book.close())
	err = run(context.Background(), []string{"ledger", "-q", "-dir", dir}, &out)
	assert.EqualError(t, err, "charged twice: p-1")
}

func TestBadInputIsRefused(t *testing.T) {
	var out strings.Builder
	assert.EqualError(t, run(context.Background(), []string{"refund"}, &out), `unknown command "refund"`)
	assert.EqualError(t, run(context.Background(), nil, &out), "no command")
	assert.Error(t, run(context.Background(), []string{"publish", "-dup", "2"}, &out))
	_, err := decodePayment([]byte(`{"id":"p-1","card":"4242","amount_cents":0}`))
	assert.ErrorContains(t, err, "positive amount_cents")
	_, err = decodePayment([]byte(`not json`))
	assert.ErrorContains(t, err, "not a payment")
}
