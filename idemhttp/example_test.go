package idemhttp_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemhttp"
)

func Example() {
	st, err := idem.Open(idem.Options{InMemory: true}) // use Dir in production
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	orders, err := st.Scope("orders", idem.ScopeOptions{})
	if err != nil {
		log.Fatal(err)
	}
	idempotent, err := idemhttp.New(orders, idemhttp.Options{
		// The authenticated caller; here a demo bearer token is the user id.
		Tenant: func(r *http.Request) (string, error) {
			return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	created := 0
	create := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		created++
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"ord_%d"}`, created)
	})
	srv := httptest.NewServer(idempotent(create))
	defer srv.Close()

	for range 2 {
		req, _ := http.NewRequest("POST", srv.URL+"/orders", strings.NewReader(`{"item":"tea"}`))
		req.Header.Set("Authorization", "Bearer alice")
		req.Header.Set("Idempotency-Key", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, string(body), "replayed:", resp.Header.Get("Idempotent-Replayed") == "true")
	}
	// Output:
	// 201 {"id":"ord_1"} replayed: false
	// 201 {"id":"ord_1"} replayed: true
}
