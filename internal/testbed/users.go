package testbed

import (
	"net/http"
	"net/url"
	"testing"
)

// CreateUser creates a management API user with tags (e.g. "management",
// "monitoring") and no permissions, and deletes it when the test ends.
func (b Broker) CreateUser(t testing.TB, name, password, tags string) {
	t.Helper()
	path := "/api/users/" + url.PathEscape(name)
	b.mustAPI(t, http.MethodPut, path, map[string]string{"password": password, "tags": tags}, http.StatusCreated, http.StatusNoContent)
	t.Cleanup(func() { b.deleteQuietly(t, path) })
}

// Grant gives user full permissions on vhost (they go with either).
func (b Broker) Grant(t testing.TB, user, vhost string) {
	t.Helper()
	perm := map[string]string{"configure": ".*", "write": ".*", "read": ".*"}
	b.mustAPI(t, http.MethodPut, "/api/permissions/"+url.PathEscape(vhost)+"/"+url.PathEscape(user), perm,
		http.StatusCreated, http.StatusNoContent)
}
