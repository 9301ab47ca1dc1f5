package idemnats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemmsg"
	"github.com/idemkit/idem/idemnats/natstest"
)

// BenchmarkConsume compares the messages a second that a pull consumer
// with four workers handles and acknowledges: bare (each message is just
// acknowledged) against idemnats on a Badger store on disk (each message
// claimed, completed and then acknowledged). Both drain the same number of
// stored messages and stop once the server has every ack.
//
//	go test -run '^$' -bench Consume -benchtime 20000x ./idemnats
func BenchmarkConsume(b *testing.B) {
	for _, mode := range []string{"bare", "idem"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			js, err := jetstream.New(natstest.Conn(b))
			require.NoError(b, err)
			name := natstest.Name(b)
			stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name}})
			require.NoError(b, err)
			b.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
			for i := range b.N {
				if _, err := js.PublishAsync(name, fmt.Appendf(nil, "payment %d", i)); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.Fatal("publishing took over a minute")
			}
			cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy})
			require.NoError(b, err)

			run, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			b.ResetTimer()
			switch mode {
			case "bare":
				wg.Go(func() { bareRun(run, cons, 4) })
			case "idem":
				st, err := idem.Open(idem.Options{Dir: b.TempDir(), GCInterval: -1})
				require.NoError(b, err)
				defer st.Close()
				scope, err := st.Scope("payments", idem.ScopeOptions{})
				require.NoError(b, err)
				c, err := New(scope, stream, cons, func(context.Context, idemmsg.Delivery) ([]byte, error) { return nil, nil }, Options{Workers: 4})
				require.NoError(b, err)
				wg.Go(func() { _ = c.Run(run) })
			}
			for {
				info, err := cons.Info(ctx)
				require.NoError(b, err)
				if info.NumPending == 0 && info.NumAckPending == 0 {
					break
				}
				time.Sleep(2 * time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			stop()
			wg.Wait()
		})
	}
}

// bareRun acknowledges every message of cons with workers goroutines, the
// way Consumer.Run pulls them, until ctx ends.
func bareRun(ctx context.Context, cons jetstream.Consumer, workers int) {
	it, err := cons.Messages(jetstream.PullMaxMessages(2*workers), jetstream.PullExpiry(pullExpiry)) // as Consumer.Run pulls
	if err != nil {
		return
	}
	defer context.AfterFunc(ctx, it.Stop)()
	msgs := make(chan jetstream.Msg)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for m := range msgs {
				_ = m.Ack()
			}
		})
	}
	defer func() { close(msgs); wg.Wait() }()
	for {
		m, err := it.Next()
		if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return
		}
		if err != nil {
			continue
		}
		msgs <- m
	}
}
