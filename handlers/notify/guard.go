package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// A local authority names the address the server POSTs to. Unguarded, that
// lets it make the server call whatever the server can reach: the cloud's
// metadata service (169.254.169.254), databases and admin ports on the
// private network. So an endpoint may only resolve to a public address (or
// loopback, where development receivers run), unless the operator lists its
// host in CPIS_NOTIFY_INTERNAL_HOSTS (an authority's receiver inside the
// network). The check is made on the addresses actually dialled, so a name
// that resolves to a public address at create time and a private one later
// (DNS rebinding) is still refused.

// errInternalAddress is a delivery attempt refused by the guard.
var errInternalAddress = errors.New("the endpoint resolves to a private, link-local or unspecified address; the operator may allow its host in CPIS_NOTIFY_INTERNAL_HOSTS")

// internalAddress reports whether ip is one no endpoint may reach unless its
// host is listed: private (RFC 1918, fc00::/7), shared (100.64.0.0/10),
// link-local, multicast or unspecified. Loopback is allowed.
func internalAddress(ip net.IP) bool {
	if ip4 := ip.To4(); ip4 != nil && ip4[0] == 100 && ip4[1]&0xc0 == 64 {
		return true
	}
	return ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified()
}

// listedHost reports whether host matches an entry of the operator's list:
// the same name, a name under an entry that starts with a dot, or any name
// for "*".
func listedHost(list []string, host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, h := range list {
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case h == "":
		case h == "*":
			return true
		case strings.HasPrefix(h, "."):
			if strings.HasSuffix(host, h) {
				return true
			}
		case host == h:
			return true
		}
	}
	return false
}

// literalInternal reports whether an endpoint's host is an address literal
// the guard would refuse: caught when the subscription is written.
func literalInternal(list []string, host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && internalAddress(ip) && !listedHost(list, host)
}

// guardedClient is the notification client: no redirects (a redirect could
// lead anywhere), and a dialer that refuses internal addresses.
func guardedClient(internal []string) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if listedHost(internal, host) {
			return d.DialContext(ctx, network, addr)
		}
		ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
		if err != nil {
			return nil, err
		}
		var last error = fmt.Errorf("notify: %s has no address", host)
		for _, ip := range ips {
			if internalAddress(ip.IP) {
				last = errInternalAddress
				continue
			}
			c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.IP.String(), port))
			if err == nil {
				return c, nil
			}
			last = err
		}
		return nil, last
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
