package idemredis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// pipeliner sends the operations of concurrent callers to Redis together.
// While one pipeline is on the wire, the calls that arrive queue up; the
// next pipeline carries them all, with the calls of one operation joined
// into one script call over their keys. A lone call leaves at once. So a
// busy service pays one round trip, one read and one write, and one
// script invocation for many calls instead of one each — on the server,
// invoking a script costs several times the commands it runs.
//
// Joining calls is safe: a script runs atomically over all its keys, and
// each key's operation sees exactly what it would alone. On a Redis
// Cluster, whose scripts may only touch keys of one slot, every call is a
// script call of its own (still pipelined).
type pipeliner struct {
	rdb     redis.UniversalClient
	cluster bool
	queue   chan *call
	quit    chan struct{}
	done    sync.WaitGroup
}

// call is one operation on one key waiting for its pipeline. Calls are
// reused (callPool) once their caller has taken the reply.
type call struct {
	op    *op
	key   string
	args  []any
	reply any      // a script's reply
	set   setReply // a setOp's reply
	err   error
	done  chan struct{} // receives once the reply is in
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

const (
	// pipelines is how many pipelines may be on the wire at once.
	pipelines = 4
	// maxBatch bounds the calls in one pipeline.
	maxBatch = 256
)

func startPipeliner(rdb redis.UniversalClient) *pipeliner {
	_, cluster := rdb.(*redis.ClusterClient)
	p := &pipeliner{rdb: rdb, cluster: cluster, queue: make(chan *call, maxBatch*pipelines), quit: make(chan struct{})}
	for range pipelines {
		p.done.Go(p.loop)
	}
	return p
}

var errClosed = errors.New("idemredis: backend closed")

// run runs o on key with args in the next pipeline and returns its reply.
// If ctx ends first, run returns ctx's error; the operation may still run.
func (p *pipeliner) run(ctx context.Context, o *op, key string, args ...any) (any, error) {
	return p.runOrHandOver(ctx, nil, o, key, args...)
}

// runOrHandOver is run, but if ctx ends first the reply, once it is in,
// is handed to late (on a goroutine of its own): a call whose caller left
// can still be undone.
func (p *pipeliner) runOrHandOver(ctx context.Context, late func(reply any, err error), o *op, key string, args ...any) (any, error) {
	var handOver func(*call)
	if late != nil {
		handOver = func(c *call) { late(c.reply, c.err) }
	}
	c, err := p.wait(ctx, o, key, args, handOver)
	if err != nil {
		return nil, err
	}
	reply, err := c.reply, c.err
	c.free()
	return reply, err
}

// runSet runs a setOp call in the next pipeline and returns its reply; if
// ctx ends first, late gets the reply once it is in, as with
// runOrHandOver.
func (p *pipeliner) runSet(ctx context.Context, late func(setReply, error), key string, value []byte, expires int64) (setReply, error) {
	c, err := p.wait(ctx, &setOp, key, []any{value, expires}, func(c *call) { late(c.set, c.err) })
	if err != nil {
		return setReply{}, err
	}
	reply, err := c.set, c.err
	c.free()
	return reply, err
}

// wait queues a call and waits for its reply, or for ctx to end: then the
// call is left to the pipeline, never reused, and handed to handOver (if
// not nil) once its reply is in.
func (p *pipeliner) wait(ctx context.Context, o *op, key string, args []any, handOver func(*call)) (*call, error) {
	c := callPool.Get().(*call)
	c.op, c.key, c.args = o, key, args
	select {
	case p.queue <- c:
	case <-ctx.Done():
		c.free()
		return nil, ctx.Err()
	case <-p.quit:
		c.free()
		return nil, errClosed
	}
	select {
	case <-c.done:
		return c, nil
	case <-ctx.Done():
		if handOver != nil {
			go func() {
				<-c.done
				handOver(c)
			}()
		}
		return nil, ctx.Err()
	}
}

// free returns a call whose reply was taken to callPool.
func (c *call) free() {
	*c = call{done: c.done}
	callPool.Put(c)
}

func (p *pipeliner) loop() {
	batch := make([]*call, 0, maxBatch)
	for {
		select {
		case c := <-p.queue:
			batch = append(batch[:0], c)
		case <-p.quit:
			return
		}
	more:
		for len(batch) < maxBatch {
			select {
			case c := <-p.queue:
				batch = append(batch, c)
			default:
				break more
			}
		}
		p.send(batch)
	}
}

// group is the calls of one script call, or of plain commands (an op
// without a script: see setOp).
type group struct {
	op    *op
	calls []*call
	cmds  []*redis.Cmd // one for a script call, one per call otherwise
}

// setOp is the plain command SET key value PXAT expires NX GET, whose
// calls take value and expires as arguments and reply a setReply. A
// pipeline that carries any ends with TIME, which each reply includes.
var setOp = op{name: "claim", args: 2}

// setReply is a setOp call's reply: the value the key held, if found (if
// not, the SET was done), and the server's time in microseconds read
// right after the SET.
type setReply struct {
	prev  string
	found bool
	us    int64
}

// send runs a batch in one pipeline, one script call per operation (per
// call on a cluster). Scripts the server does not know yet (a new or
// restarted server) are sent again with their source.
func (p *pipeliner) send(batch []*call) {
	var groups []*group
	byOp := map[*op]*group{}
	for _, c := range batch {
		g := byOp[c.op]
		if g == nil || p.cluster {
			g = &group{op: c.op}
			groups = append(groups, g)
			byOp[c.op] = g
		}
		g.calls = append(g.calls, c)
	}
	ctx := context.Background()
	pipe := p.rdb.Pipeline()
	for _, g := range groups {
		if g.op.script == nil {
			for _, c := range g.calls {
				g.cmds = append(g.cmds, pipe.Do(ctx, "SET", c.key, c.args[0], "PXAT", c.args[1], "NX", "GET"))
			}
			continue
		}
		keys, args := g.arguments()
		g.cmds = []*redis.Cmd{g.op.script.EvalSha(ctx, pipe, keys, args...)}
	}
	var clock *redis.Cmd
	if byOp[&setOp] != nil {
		clock = pipe.Do(ctx, "TIME")
	}
	_, _ = pipe.Exec(ctx) // errors are in each command
	for _, g := range groups {
		if g.op.script == nil {
			g.deliverSet(clock)
			continue
		}
		if err := g.cmds[0].Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			keys, args := g.arguments()
			g.cmds[0] = g.op.script.Eval(ctx, p.rdb, keys, args...)
		}
		g.deliver()
	}
}

// arguments lays the group's calls out as a script call's keys and
// arguments.
func (g *group) arguments() ([]string, []any) {
	keys := make([]string, len(g.calls))
	args := make([]any, 0, len(g.calls)*g.op.args)
	for i, c := range g.calls {
		keys[i] = c.key
		args = append(args, c.args...)
	}
	return keys, args
}

// deliver hands each call its reply, or its error, and wakes it.
func (g *group) deliver() {
	replies, err := g.cmds[0].Slice()
	if err == nil && len(replies) != len(g.calls) {
		err = fmt.Errorf("%d replies for %d keys", len(replies), len(g.calls))
	}
	for i, c := range g.calls {
		cerr := err
		if cerr == nil {
			c.reply = replies[i]
			cerr, _ = c.reply.(error) // this key's alone (see malformed)
		}
		if cerr != nil {
			c.reply, c.err = nil, fmt.Errorf("idemredis: %s: %w", g.op.name, cerr)
		}
		c.done <- struct{}{}
	}
}

// deliverSet hands each plain SET call its setReply and wakes it.
func (g *group) deliverSet(clock *redis.Cmd) {
	us, err := serverTime(clock)
	for i, c := range g.calls {
		prev, cerr := g.cmds[i].Text()
		switch {
		case err != nil:
			c.err = fmt.Errorf("idemredis: time: %w", err)
		case cerr == redis.Nil:
			c.set = setReply{us: us}
		case cerr != nil:
			c.err = fmt.Errorf("idemredis: %s: %w", g.op.name, cerr)
		default:
			c.set = setReply{prev: prev, found: true, us: us}
		}
		c.done <- struct{}{}
	}
}

// serverTime reads TIME's reply in microseconds.
func serverTime(cmd *redis.Cmd) (int64, error) {
	v, err := cmd.StringSlice()
	if err == nil && len(v) != 2 {
		err = fmt.Errorf("reply %q", v)
	}
	if err != nil {
		return 0, err
	}
	sec, err1 := strconv.ParseInt(v[0], 10, 64)
	usec, err2 := strconv.ParseInt(v[1], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return sec*1e6 + usec, nil
}

// stop ends the loops once the pipelines on the wire are back.
func (p *pipeliner) stop() {
	close(p.quit)
	p.done.Wait()
}
