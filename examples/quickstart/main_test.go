package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestQuickstartChargesOnceAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	var first, second bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"-dir", dir}, &first))
	assert.Contains(t, first.String(), "retry 1:          {\"charge\": \"ch_1\", \"amount\": 4200} replayed=false")
	assert.Contains(t, first.String(), "retry 3:          {\"charge\": \"ch_1\", \"amount\": 4200} replayed=true")
	assert.Contains(t, first.String(), "50 at once:       1 ran, 49 got the result of that run")
	assert.Contains(t, first.String(), "other payload:    idem: key reused with a different fingerprint")
	assert.Contains(t, first.String(), "charges:          2 in this run for 2 payments")

	require.NoError(t, run(context.Background(), []string{"-dir", dir}, &second))
	assert.Contains(t, second.String(), "retry 1:          {\"charge\": \"ch_1\", \"amount\": 4200} replayed=true")
	assert.Contains(t, second.String(), "50 at once:       0 ran, 50 got the result of that run")
	assert.Contains(t, second.String(), "charges:          0 in this run for 2 payments")
}

func TestQuickstartBadFlag(t *testing.T) {
	assert.Error(t, run(context.Background(), []string{"-nope"}, new(bytes.Buffer)))
}
