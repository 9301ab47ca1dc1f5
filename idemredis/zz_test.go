package idemredis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func srvCPU(rdb *redis.Client) float64 {
	s := rdb.Info(context.Background(), "cpu").Val()
	var t float64
	for _, l := range strings.Split(s, "\r\n") {
		if strings.HasPrefix(l, "used_cpu_user:") || strings.HasPrefix(l, "used_cpu_sys:") {
			v, _ := strconv.ParseFloat(strings.SplitN(l, ":", 2)[1], 64)
			t += v
		}
	}
	return t
}

func TestZZComplete(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6390", PoolSize: 32})
	ctx := context.Background()
	val := strings.Repeat("v", 300)
	// keys exist with a claim header, owner 17 digits
	const nk = 4096
	for i := range nk {
		rdb.Set(ctx, fmt.Sprintf("lb:{%d}", i), "123456789012345678,1,0,9999999999999,0;"+val[:60], 0)
	}
	var seq atomic.Int64
	prologue := `
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local us = t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
`
	bareC := redis.NewScript(`
local out = {}
for i = 1, #KEYS do
  out[i] = 1
  redis.call('SET', KEYS[i], ARGV[(i-1)*3+2], 'PXAT', '9999999999999', 'XX', 'GET')
end
return out`)
	protoC := redis.NewScript(prologue + `
local out = {}
for i = 1, #KEYS do
  out[i] = 1
  redis.call('SET', KEYS[i], ARGV[(i-1)*3+2], 'PXAT', '9999999999999', 'XX', 'GET')
end
return out`)
	empty := redis.NewScript(prologue + `
local out = {}
for i = 1, #KEYS do
  out[i] = 1
end
return out`)
	run := func(sc *redis.Script) func(n int) error {
		return func(n int) error {
			keys := make([]string, n)
			var args []any
			for i := range keys { keys[i] = fmt.Sprintf("lb:{%d}", seq.Add(1)%nk); args = append(args, "123456789012345678", val, int64(86400000)) }
			err := sc.Run(ctx, rdb, keys, args...).Err()
			return err
		}
	}
	modes := map[string]func(n int) error{"bare": run(bareC), "prologue": run(protoC), "empty": run(empty), "complete": run(completeOp.script)}
	for _, name := range []string{"empty", "bare", "prologue", "complete", "empty", "bare", "prologue", "complete"} {
		for _, n := range []int{1, 8, 32} {
			f := modes[name]
			c0 := srvCPU(rdb)
			var done atomic.Int64
			var wg sync.WaitGroup
			stop := time.Now().Add(time.Second)
			for range 8 {
				wg.Go(func() {
					for time.Now().Before(stop) {
						if err := f(n); err != nil { t.Error(err); return }
						done.Add(int64(n))
					}
				})
			}
			wg.Wait()
			c1 := srvCPU(rdb)
			fmt.Printf("%-8s n=%-3d keys/s %7d  server cpu/key %.2f µs\n", name, n, done.Load(), (c1-c0)*1e6/float64(done.Load()))
		}
	}
	rdb.Eval(ctx, "for _,k in ipairs(redis.call('KEYS','lb:*')) do redis.call('DEL',k) end", nil)
}
