package customauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// apiAnswer is what an API the gateway calls answered.
type apiAnswer struct {
	code   int
	header http.Header
	body   []byte
}

// errTooLarge marks an answer over the size its API may send.
var errTooLarge = errors.New("answer too large")

// callAPI calls an API of the customer, a tenant or the chat backend: the configured
// headers, JSON accepted (and sent, with a body), the URL kept out of errors (it may
// carry credentials), and an answer read up to maxAnswer bytes; a larger one is
// errTooLarge. Every answer is read, whatever its status.
func callAPI(ctx context.Context, client *http.Client, method, target string, headers http.Header, body []byte, maxAnswer int) (apiAnswer, error) {
	var reqBody io.Reader
	if body != nil {
		reqBody = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, reqBody)
	if err != nil {
		return apiAnswer{}, redactURLError(err)
	}
	for name, values := range headers {
		req.Header[name] = values
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return apiAnswer{}, redactURLError(err)
	}
	defer resp.Body.Close()
	answer := apiAnswer{code: resp.StatusCode, header: resp.Header}
	if answer.body, err = io.ReadAll(io.LimitReader(resp.Body, int64(maxAnswer)+1)); err != nil {
		return answer, fmt.Errorf("reading the answer: %w", err)
	}
	if len(answer.body) > maxAnswer {
		return answer, fmt.Errorf("%w: over %d bytes", errTooLarge, maxAnswer)
	}
	return answer, nil
}
