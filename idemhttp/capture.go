package idemhttp

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"strings"
)

// captureWriter writes the handler's response through to the client and
// keeps a copy, up to limit bytes of body, to store.
type captureWriter struct {
	w      http.ResponseWriter
	limit  int
	status int         // 0 until the final status is written
	header http.Header // snapshot at WriteHeader: what the client got
	body   bytes.Buffer

	overflow bool // the body passed limit
	streamed bool // flushed or hijacked: not replayable
}

var (
	_ http.ResponseWriter = (*captureWriter)(nil)
	_ http.Flusher        = (*captureWriter)(nil)
	_ http.Hijacker       = (*captureWriter)(nil)
)

func (c *captureWriter) Header() http.Header { return c.w.Header() }

func (c *captureWriter) WriteHeader(status int) {
	if c.status != 0 {
		c.w.WriteHeader(status) // net/http reports the superfluous call
		return
	}
	if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
		c.w.WriteHeader(status) // informational: not the final response
		return
	}
	c.status = status
	c.header = c.w.Header().Clone()
	c.w.WriteHeader(status)
}

func (c *captureWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.WriteHeader(http.StatusOK)
	}
	n, err := c.w.Write(p) // what the client did not get (a body on a 204, say) is not recorded either
	if !c.overflow {
		if c.body.Len()+n > c.limit {
			c.overflow = true
			c.body.Reset()
		} else {
			c.body.Write(p[:n])
		}
	}
	return n, err
}

// Flush sends what is buffered to the client; the response is then a
// stream, which is not replayed.
func (c *captureWriter) Flush() { _ = c.FlushError() }

// FlushError is Flush for http.ResponseController.
func (c *captureWriter) FlushError() error {
	if c.status == 0 {
		c.WriteHeader(http.StatusOK)
	}
	if _, held := c.w.(*bufferedResponse); held {
		return nil // nothing goes out before the outcome is stored
	}
	c.streamed = true
	return http.NewResponseController(c.w).Flush()
}

// Hijack hands the connection to the handler; the response is then not
// replayable.
func (c *captureWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c.streamed = true
	return http.NewResponseController(c.w).Hijack()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (c *captureWriter) Unwrap() http.ResponseWriter { return c.w }

// result is the response as it is to be stored.
func (c *captureWriter) result() *storedResponse {
	status, header := c.status, c.header
	if status == 0 { // the handler wrote nothing: net/http sends 200
		status, header = http.StatusOK, c.w.Header().Clone()
	}
	if c.streamed || c.overflow || status == http.StatusSwitchingProtocols || hasTrailers(c.w.Header()) {
		return &storedResponse{kind: kindUnavailable, status: status}
	}
	return &storedResponse{kind: kindReplayable, status: status, header: header, body: c.body.Bytes()}
}

// hasTrailers reports whether the response declares or sets trailers,
// which a stored response does not keep: such a response is not
// replayable rather than replayed without them.
func hasTrailers(h http.Header) bool {
	if len(h.Values("Trailer")) > 0 {
		return true
	}
	for name := range h {
		if strings.HasPrefix(name, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

// bufferedResponse holds a handler's response (Options.Buffer) until it may
// be sent. It has headers of its own, which start as the ones outer
// middleware set, so that a response that is never sent leaves nothing on
// the real one.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

var (
	_ http.ResponseWriter = (*bufferedResponse)(nil)
	_ http.Flusher        = (*bufferedResponse)(nil)
)

func newBufferedResponse(w http.ResponseWriter) *bufferedResponse {
	return &bufferedResponse{header: w.Header().Clone()}
}

func (b *bufferedResponse) Header() http.Header { return b.header }

// WriteHeader keeps the first final status; informational ones are not
// sent, since nothing is until the outcome is stored.
func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 && (status < 100 || status >= 200 || status == http.StatusSwitchingProtocols) {
		b.status = status
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.WriteHeader(http.StatusOK)
	}
	return b.body.Write(p)
}

// Flush does nothing: the response goes out once its outcome is stored.
func (b *bufferedResponse) Flush() {}

// sendTo writes the held response to w.
func (b *bufferedResponse) sendTo(w http.ResponseWriter) {
	h := w.Header()
	clear(h)
	for name, values := range b.header {
		h[name] = values
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body.Bytes())
}
