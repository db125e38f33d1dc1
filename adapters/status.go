package adapters

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ClassifyStatus is the one policy for HTTP answers from any provider or
// device: 429 and 503 → wait at least retryAfter (1s if none was given); 401
// and 403 → retryable, since the endpoint or our credentials are broken, not
// the message, so the breaker opens and the fallback takes over; other 4xx →
// Permanent (a bad request: retrying cannot help, and it must not trip the
// breaker); 5xx → retryable. err describes the answer.
func ClassifyStatus(status int, retryAfter time.Duration, err error) error {
	switch {
	case status < 400:
		return nil
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
		return RetryAfter(err, max(retryAfter, time.Second))
	case status == http.StatusUnauthorized || status == http.StatusForbidden ||
		status == http.StatusRequestTimeout || status == http.StatusTooEarly:
		return err
	case status < 500:
		return Permanent(err)
	}
	return err
}

// RetryAfterHeader reads a Retry-After header in seconds or as an HTTP date;
// 0 when absent or unreadable.
func RetryAfterHeader(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// CheckResponse classifies an HTTP response from a device or provider with
// ClassifyStatus; the error names op, the status and the start of the body.
// It reads and closes the body.
func CheckResponse(op string, resp *http.Response) error {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16)) // let the connection be reused
	if resp.StatusCode < 300 {
		return nil
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return ClassifyStatus(resp.StatusCode, RetryAfterHeader(resp.Header), fmt.Errorf("%s: HTTP %d: %s", op, resp.StatusCode, msg))
}

// Post sends body to url with the given headers and classifies the answer
// with CheckResponse; op names the endpoint in errors. A transport error is
// retryable; a cancelled ctx returns ctx's error.
func Post(ctx context.Context, c *http.Client, op, url string, body []byte, header map[string]string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Permanent(fmt.Errorf("%s: %w", op, err))
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	return CheckResponse(op, resp)
}
