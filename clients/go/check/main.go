// Command check is the contract from Go, against a running mesh: it calls every RPC of
// every service with code generated from proto/ (buf, protoc-gen-go, protoc-gen-go-grpc),
// then joins a consumer group on the three topics with franz-go and decodes every
// record by its ce_type through the protobuf registry, checking each event's
// EventMetadata against its CloudEvents headers. Exits non-zero on the first mismatch.
//
//	scripts/client-go check --data-dir .weft --weft ./weft
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	analyticsv1 "weft.dev/clients/go/gen/weft/analytics/v1"
	commonv1 "weft.dev/clients/go/gen/weft/common/v1"
	notificationv1 "weft.dev/clients/go/gen/weft/notification/v1"
	orderv1 "weft.dev/clients/go/gen/weft/order/v1"
	userv1 "weft.dev/clients/go/gen/weft/user/v1"
)

const password = "correct horse battery 9"

var (
	// Names of this run, so that the check can run again against the same mesh.
	run    = fmt.Sprintf("%d-%d", time.Now().Unix(), os.Getpid())
	topics = []string{"user-events", "order-events", "notification-events"}
	// The event types the mesh emits; every one must be seen on the topics.
	eventTypes = []string{
		"weft.user.v1.UserSignedUp", "weft.user.v1.UserUpdated", "weft.user.v1.UserRolesChanged",
		"weft.user.v1.ContactVerificationRequested", "weft.user.v1.ContactVerified",
		"weft.order.v1.OrderCreated", "weft.order.v1.PaymentProcessed", "weft.order.v1.PaymentFailed",
		"weft.order.v1.OrderShipped", "weft.order.v1.OrderDelivered", "weft.order.v1.OrderCancelled",
		"weft.notification.v1.EmailSent", "weft.notification.v1.SmsSent",
	}
	called = map[string]bool{}
)

type args struct {
	user, order, notification, analytics string
	brokers, prefix, dataDir, weft       string
	kafkaLog                             string
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "go client: "+format+"\n", a...)
	os.Exit(1)
}

func check(ok bool, format string, a ...any) {
	if !ok {
		fail(format, a...)
	}
}

// invoke calls one unary RPC with a 20 s deadline (and the bearer token, if any) and
// records its name once it has answered.
func invoke[Req, Resp any](name string, fn func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req, token string) (Resp, error) {
	ctx, cancel := context.WithTimeout(authorized(token), 20*time.Second)
	defer cancel()
	reply, err := fn(ctx, req)
	if err == nil {
		called[name] = true
	}
	return reply, err
}

// call is invoke that fails the check on an error.
func call[Req, Resp any](name string, fn func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req, token string) Resp {
	reply, err := invoke(name, fn, req, token)
	if err != nil {
		fail("%s: %v", name, err)
	}
	return reply
}

func authorized(token string) context.Context {
	ctx := context.Background()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	return ctx
}

func eventually[T any](what string, fn func() (T, bool)) T {
	const seconds = 60
	deadline := time.Now().Add(seconds * time.Second)
	for time.Now().Before(deadline) {
		if v, ok := fn(); ok {
			return v
		}
		time.Sleep(200 * time.Millisecond)
	}
	fail("%s did not happen within %d s", what, seconds)
	panic("unreachable")
}

// byMtime lists dir/*.ext, oldest first.
func byMtime(dir, ext string) []string {
	paths, _ := filepath.Glob(filepath.Join(dir, "*"+ext))
	mtime := map[string]time.Time{}
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil {
			mtime[p] = st.ModTime()
		}
	}
	sort.SliceStable(paths, func(i, j int) bool { return mtime[paths[i]].Before(mtime[paths[j]]) })
	return paths
}

var verifyLink = regexp.MustCompile(`/verify\?token=([A-Za-z0-9_-]+)`)

// mailMessages is every message in the mail dir, oldest first: the .eml files (the older
// format) by mtime, then the entries of the <day>.mbox files (mboxrd) by day and position.
func mailMessages(dir string) [][]byte {
	var messages [][]byte
	for _, path := range byMtime(dir, ".eml") {
		if raw, err := os.ReadFile(path); err == nil {
			messages = append(messages, raw)
		}
	}
	mailboxes, _ := filepath.Glob(filepath.Join(dir, "*.mbox")) // sorted by name
	for _, path := range mailboxes {
		if raw, err := os.ReadFile(path); err == nil {
			messages = append(messages, mboxEntries(raw)...)
		}
	}
	return messages
}

var (
	mboxFromLine = regexp.MustCompile(`(?m)^From .*\n`)
	mboxQuoted   = regexp.MustCompile(`(?m)^>(>*From )`)
)

// mboxEntries splits an mboxrd file into its messages, unquoted. An entry not yet ended
// by its blank line is still being written and left out.
func mboxEntries(raw []byte) [][]byte {
	entries := mboxFromLine.Split(string(raw), -1)[1:]
	if len(entries) > 0 && !bytes.HasSuffix(raw, []byte("\n\n")) {
		entries = entries[:len(entries)-1]
	}
	messages := make([][]byte, 0, len(entries))
	for _, e := range entries {
		e = strings.TrimSuffix(e, "\n") // the blank line that ends an entry
		messages = append(messages, []byte(mboxQuoted.ReplaceAllString(e, "$1")))
	}
	return messages
}

func mailToken(data, address string) (string, bool) {
	for _, raw := range mailMessages(filepath.Join(data, "mail")) {
		msg, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			continue
		}
		to, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("To"))
		if err != nil || !strings.Contains(to, address) {
			continue
		}
		body, ok := plainBody(msg.Header, msg.Body)
		if !ok {
			continue
		}
		if m := verifyLink.FindStringSubmatch(body); m != nil {
			return m[1], true
		}
	}
	return "", false
}

type header interface{ Get(string) string }

// plainBody is the first text/plain part of a message (the message itself when it is
// not multipart), its transfer encoding undone.
func plainBody(h header, body io.Reader) (string, bool) {
	media, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		media = "text/plain" // RFC 2045's default
	}
	if strings.HasPrefix(media, "multipart/") {
		parts := multipart.NewReader(body, params["boundary"])
		for {
			part, err := parts.NextPart()
			if err != nil {
				return "", false
			}
			if strings.HasPrefix(strings.ToLower(part.Header.Get("Content-Disposition")), "attachment") {
				continue
			}
			// NextPart has already undone quoted-printable.
			if text, ok := plainBody(part.Header, part); ok {
				return text, true
			}
		}
	}
	if media != "text/plain" {
		return "", false
	}
	switch strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, newlineDropper{body})
	}
	text, err := io.ReadAll(body)
	return string(text), err == nil
}

// newlineDropper drops the line breaks of base64 text.
type newlineDropper struct{ r io.Reader }

func (n newlineDropper) Read(p []byte) (int, error) {
	k, err := n.r.Read(p)
	out := p[:0]
	for _, b := range p[:k] {
		if b != '\r' && b != '\n' {
			out = append(out, b)
		}
	}
	return len(out), err
}

var smsDigits = regexp.MustCompile(`\b(\d{6})\b`)

func smsCode(data, phone string) (string, bool) {
	for _, path := range byMtime(filepath.Join(data, "sms"), ".json") {
		raw, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var sms struct {
			To   string `json:"to"`
			Body string `json:"body"`
		}
		if err := json.Unmarshal(raw, &sms); err != nil {
			fail("%s: %v", path, err)
		}
		if m := smsDigits.FindStringSubmatch(sms.Body); sms.To == phone && m != nil {
			return m[1], true
		}
	}
	return "", false
}

func usd(units int64, nanos int32) *commonv1.Money {
	return &commonv1.Money{CurrencyCode: "USD", Units: units, Nanos: nanos}
}

func dial(addr string) *grpc.ClientConn {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail("%s: %v", addr, err)
	}
	return conn
}

func codeOf(err error) codes.Code { return status.Code(err) }

func rpcs(a args) {
	users := userv1.NewUserServiceClient(dial(a.user))
	orders := orderv1.NewOrderServiceClient(dial(a.order))
	notes := notificationv1.NewNotificationServiceClient(dial(a.notification))
	analytics := analyticsv1.NewAnalyticsServiceClient(dial(a.analytics))

	// Staff, made by the operator's tool.
	staffEmail := fmt.Sprintf("go-staff-%s@example.com", run)
	call("SignUp", users.SignUp, &userv1.SignUpRequest{
		Email: staffEmail, Name: "Go Staff", Password: password,
		Source: userv1.SignupSource_SIGNUP_SOURCE_API,
	}, "")
	if out, err := exec.Command(a.weft, "admin", "grant", staffEmail, "staff", "--data-dir", a.dataDir).CombinedOutput(); err != nil {
		fail("%s admin grant %s staff: %v\n%s", a.weft, staffEmail, err, out)
	}
	staff := call("Login", users.Login, &userv1.LoginRequest{Email: staffEmail, Password: password}, "").GetAccessToken()

	address := fmt.Sprintf("go-%s@example.com", run)
	phone := fmt.Sprintf("+1557%07d", os.Getpid()%10_000_000)
	user := call("SignUp", users.SignUp, &userv1.SignUpRequest{
		Email: address, Name: "Go Pher", Password: password, Phone: phone,
		Source: userv1.SignupSource_SIGNUP_SOURCE_WEB, Metadata: map[string]string{"client": "go"},
	}, "").GetUser()
	login := call("Login", users.Login, &userv1.LoginRequest{Email: address, Password: password}, "")
	token, uid := login.GetAccessToken(), login.GetUserId()
	check(uid == user.GetUserId(), "Login names user %q, SignUp made %q", uid, user.GetUserId())
	got := call("GetUser", users.GetUser, &userv1.GetUserRequest{UserId: uid}, token).GetUser()
	check(got.GetEmail() == address, "GetUser: email %q, want %q", got.GetEmail(), address)
	renamed := call("UpdateUser", users.UpdateUser, &userv1.UpdateUserRequest{
		User:       &userv1.User{UserId: uid, Name: "Go Pher II"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}},
	}, token).GetUser()
	check(renamed.GetName() == "Go Pher II", "UpdateUser: name %q", renamed.GetName())
	check(len(call("GetJwks", users.GetJwks, &userv1.GetJwksRequest{}, "").GetKeys()) > 0, "GetJwks: no keys")
	link := eventually("the verification email", func() (string, bool) { return mailToken(a.dataDir, address) })
	check(call("VerifyEmail", users.VerifyEmail, &userv1.VerifyEmailRequest{Token: link}, "").GetUser().GetEmailVerified(),
		"VerifyEmail: email not verified")
	code := eventually("the verification text", func() (string, bool) { return smsCode(a.dataDir, phone) })
	check(call("VerifyPhone", users.VerifyPhone, &userv1.VerifyPhoneRequest{UserId: uid, Code: code}, token).GetUser().GetPhoneVerified(),
		"VerifyPhone: phone not verified")
	if _, err := invoke("ResendVerification", users.ResendVerification, &userv1.ResendVerificationRequest{
		UserId: uid, Kind: userv1.ContactKind_CONTACT_KIND_EMAIL,
	}, token); err != nil {
		// Both contacts are verified (or it is too soon): a clear refusal is the answer.
		if c := codeOf(err); c != codes.FailedPrecondition && c != codes.ResourceExhausted {
			fail("ResendVerification: %v", err)
		}
		called["ResendVerification"] = true
	}

	products := call("ListProducts", orders.ListProducts, &orderv1.ListProductsRequest{}, "").GetProducts()
	ids := map[string]bool{}
	for _, p := range products {
		ids[p.GetProductId()] = true
	}
	check(ids["mug"] && ids["lamp"], "ListProducts: no mug and lamp among %d products", len(products))
	mug := call("GetProduct", orders.GetProduct, &orderv1.GetProductRequest{ProductId: "mug"}, "").GetProduct()
	check(proto.Equal(mug.GetUnitPrice(), usd(29, 990_000_000)), "GetProduct: the mug costs %v", mug.GetUnitPrice())
	sticker := fmt.Sprintf("go-sticker-%s", run)
	call("CreateProduct", orders.CreateProduct, &orderv1.CreateProductRequest{Product: &orderv1.Product{
		ProductId: sticker, Name: "Sticker", UnitPrice: usd(1, 500_000_000), Active: true,
	}}, staff)
	call("UpdateProduct", orders.UpdateProduct, &orderv1.UpdateProductRequest{
		Product:    &orderv1.Product{ProductId: sticker, UnitPrice: usd(2, 0)},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"unit_price"}},
	}, staff)
	items := []*orderv1.OrderItem{{ProductId: "mug", Quantity: 2}, {ProductId: "lamp", Quantity: 1}}
	order := call("CreateOrder", orders.CreateOrder, &orderv1.CreateOrderRequest{Items: items}, token).GetOrder()
	check(proto.Equal(order.GetTotal(), usd(109, 970_000_000)), "CreateOrder: total %v", order.GetTotal())
	card := &orderv1.PaymentCard{Number: "4242424242424242", ExpMonth: 12, ExpYear: 2099, Cvc: "123"}
	call("PayOrder", orders.PayOrder, &orderv1.PayOrderRequest{OrderId: order.GetOrderId(), Card: card}, token)
	check(call("GetOrder", orders.GetOrder, &orderv1.GetOrderRequest{OrderId: order.GetOrderId()}, token).GetOrder().GetOrderId() != "",
		"GetOrder: no order id")
	check(len(call("ListOrders", orders.ListOrders, &orderv1.ListOrdersRequest{UserId: uid}, token).GetOrders()) > 0,
		"ListOrders: no orders")
	call("ShipOrder", orders.ShipOrder, &orderv1.ShipOrderRequest{
		OrderId: order.GetOrderId(), Carrier: "UPS", TrackingNumber: "1Z999AA10123456784",
	}, staff)
	call("DeliverOrder", orders.DeliverOrder, &orderv1.DeliverOrderRequest{OrderId: order.GetOrderId()}, staff)
	second := call("CreateOrder", orders.CreateOrder, &orderv1.CreateOrderRequest{
		Items: []*orderv1.OrderItem{{ProductId: sticker, Quantity: 3}},
	}, token).GetOrder()
	declined := &orderv1.PaymentCard{Number: "4000000000000002", ExpMonth: 12, ExpYear: 2099, Cvc: "123"}
	_, err := invoke("PayOrder", orders.PayOrder, &orderv1.PayOrderRequest{OrderId: second.GetOrderId(), Card: declined}, token)
	// Declined: FAILED_PRECONDITION, and PaymentFailed on order-events.
	check(err != nil, "a declined card was accepted")
	check(codeOf(err) == codes.FailedPrecondition, "declined PayOrder: %v", err)
	call("CancelOrder", orders.CancelOrder, &orderv1.CancelOrderRequest{OrderId: second.GetOrderId(), Reason: "declined"}, token)

	listed := eventually("the user's notifications", func() ([]*notificationv1.Notification, bool) {
		n := call("ListNotifications", notes.ListNotifications, &notificationv1.ListNotificationsRequest{UserId: uid}, token).GetNotifications()
		return n, len(n) > 0
	})
	call("GetNotification", notes.GetNotification,
		&notificationv1.GetNotificationRequest{NotificationId: listed[0].GetNotificationId()}, token)

	// Analytics counts from the events, a moment after the sign-ups were answered.
	eventually("both sign-ups counted by GetMetrics", func() (bool, bool) {
		m := call("GetMetrics", analytics.GetMetrics, &analyticsv1.GetMetricsRequest{}, "").GetMetrics()
		return true, m.GetSignups() >= 2
	})
	ctx, cancel := context.WithTimeout(authorized(staff), 20*time.Second)
	stream, err := analytics.StreamMetrics(ctx, &analyticsv1.StreamMetricsRequest{})
	if err != nil {
		fail("StreamMetrics: %v", err)
	}
	first, err := stream.Recv()
	if err != nil {
		fail("StreamMetrics: %v", err)
	}
	check(first.GetMetrics().GetSignups() >= 2, "StreamMetrics: first message counts %d sign-ups", first.GetMetrics().GetSignups())
	cancel()
	called["StreamMetrics"] = true
	check(len(call("ListRecentEvents", analytics.ListRecentEvents, &analyticsv1.ListRecentEventsRequest{Limit: 10}, staff).GetEvents()) > 0,
		"ListRecentEvents: no events")
	hours := call("ListWindows", analytics.ListWindows, &analyticsv1.ListWindowsRequest{Width: analyticsv1.WindowWidth_WINDOW_WIDTH_HOUR}, "").GetWindows()
	var signups int64
	for _, w := range hours {
		signups += w.GetSignups()
	}
	check(len(hours) == 60 && signups >= 2, "ListWindows: %d hour windows, %d sign-ups in them", len(hours), signups)
	call("RebuildProjections", analytics.RebuildProjections, &analyticsv1.RebuildProjectionsRequest{}, staff)
}

// everyRPC is the name of every method of every service of weft's contracts, from the
// descriptors the generated code registered.
func everyRPC() map[string]bool {
	names := map[string]bool{}
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "weft.") {
			return true
		}
		for i := 0; i < fd.Services().Len(); i++ {
			methods := fd.Services().Get(i).Methods()
			for j := 0; j < methods.Len(); j++ {
				names[string(methods.Get(j).Name())] = true
			}
		}
		return true
	})
	return names
}

// headerOf is the value of a record's first header called name; false when it has none
// (or a null value).
func headerOf(r *kgo.Record, name string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == name {
			return string(h.Value), h.Value != nil
		}
	}
	return "", false
}

// errUnknownType is checkRecord's answer for a ce_type this client has no type for.
var errUnknownType = errors.New("unknown event type")

// checkRecord decodes one record by its ce_type and checks its EventMetadata against
// its CloudEvents headers; the type, or why it does not match.
func checkRecord(r *kgo.Record) (string, error) {
	ceType, ok := headerOf(r, "ce_type")
	where := fmt.Sprintf("%s/%d:%d %s", r.Topic, r.Partition, r.Offset, ceType)
	if !ok {
		return "", fmt.Errorf("%s: no ce_type header", where)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(ceType))
	if errors.Is(err, protoregistry.NotFound) {
		// A type added to the contract after this client was built: skipped, as every
		// consumer of the topics must.
		return "", errUnknownType
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", where, err)
	}
	event := mt.New()
	if err := proto.Unmarshal(r.Value, event.Interface()); err != nil {
		return "", fmt.Errorf("%s: %w", where, err)
	}
	field := event.Descriptor().Fields().ByName("metadata")
	if field == nil || field.Message() == nil {
		return "", fmt.Errorf("%s: the event has no metadata field", where)
	}
	meta, ok := event.Get(field).Message().Interface().(*commonv1.EventMetadata)
	if !ok {
		return "", fmt.Errorf("%s: its metadata field is not a weft.common.v1.EventMetadata", where)
	}
	same := func(name, want string) error {
		got, ok := headerOf(r, name)
		if !ok || got != want {
			return fmt.Errorf("%s: header %s is %s, want %q", where, name, shown(got, ok), want)
		}
		return nil
	}
	for _, h := range [][2]string{
		{"ce_specversion", "1.0"},
		{"content-type", "application/protobuf"},
		{"ce_id", meta.GetEventId()},
		{"ce_correlationid", meta.GetCorrelationId()},
	} {
		if err := same(h[0], h[1]); err != nil {
			return "", err
		}
	}
	// A root event has no causation: the header may be absent.
	if causation, _ := headerOf(r, "ce_causationid"); causation != meta.GetCausationId() {
		return "", fmt.Errorf("%s: header ce_causationid is %q, want %q", where, causation, meta.GetCausationId())
	}
	if err := same("ce_source", "/weft/"+meta.GetSourceService()); err != nil {
		return "", err
	}
	if !slices.Contains([]string{"user", "order", "notification"}, meta.GetSourceService()) {
		return "", fmt.Errorf("%s: source service %q", where, meta.GetSourceService())
	}
	if ceTime, _ := headerOf(r, "ce_time"); ceTime == "" {
		return "", fmt.Errorf("%s: no ce_time header", where)
	}
	return ceType, nil
}

func shown(v string, ok bool) string {
	if !ok {
		return "absent"
	}
	return fmt.Sprintf("%q", v)
}

func kafkaLogLevel(name string) kgo.LogLevel {
	switch name {
	case "none":
		return kgo.LogLevelNone
	case "error":
		return kgo.LogLevelError
	case "warn":
		return kgo.LogLevelWarn
	case "info":
		return kgo.LogLevelInfo
	case "debug":
		return kgo.LogLevelDebug
	}
	fail("--kafka-log %q: one of none, error, warn, info, debug", name)
	return kgo.LogLevelNone
}

// events joins a consumer group of its own (a new group id each run, so it starts at
// the beginning of every partition) on the three topics and checks every record until
// every event type was seen; the number of records checked, and of records of unknown
// types skipped.
func events(a args) (int, int) {
	group := fmt.Sprintf("%sweft-go-check-%d-%d", a.prefix, os.Getpid(), time.Now().UnixNano())
	var names []string
	for _, t := range topics {
		names = append(names, a.prefix+t)
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(a.brokers, ",")...),
		kgo.ClientID("weft-go-check"),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(names...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.WithLogger(kgo.BasicLogger(os.Stderr, kafkaLogLevel(a.kafkaLog), func() string { return "go client: kafka: " })),
	)
	if err != nil {
		fail("kafka client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	seen := map[string]bool{}
	missing := func() []string {
		var m []string
		for _, t := range eventTypes {
			if !seen[t] {
				m = append(m, t)
			}
		}
		return m
	}
	records, skipped := 0, 0
	var lastErr error
	for len(missing()) > 0 && ctx.Err() == nil {
		fetches := cl.PollFetches(ctx)
		for _, fe := range fetches.Errors() {
			if ctx.Err() != nil && (errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled)) {
				continue
			}
			if lastErr == nil || lastErr.Error() != fe.Err.Error() {
				fmt.Fprintf(os.Stderr, "go client: kafka: %s/%d: %v\n", fe.Topic, fe.Partition, fe.Err)
			}
			lastErr = fe.Err
		}
		var bad error
		fetches.EachRecord(func(r *kgo.Record) {
			if bad != nil {
				return
			}
			ceType, err := checkRecord(r)
			if errors.Is(err, errUnknownType) {
				skipped++
				return
			}
			if err != nil {
				bad = err
				return
			}
			seen[ceType] = true
			records++
		})
		if bad != nil {
			cl.Close()
			fail("%v", bad)
		}
	}
	cl.Close() // leaves the group
	if m := missing(); len(m) > 0 {
		why := ""
		if lastErr != nil {
			why = fmt.Sprintf(" (last Kafka error: %v)", lastErr)
		}
		fail("never saw %v within 60 s on %v (group %s)%s", m, names, group, why)
	}
	return records, skipped
}

func main() {
	var a args
	flag.StringVar(&a.user, "user", "localhost:5051", "the user service")
	flag.StringVar(&a.order, "order", "localhost:5052", "the order service")
	flag.StringVar(&a.notification, "notification", "localhost:5053", "the notification service")
	flag.StringVar(&a.analytics, "analytics", "localhost:5054", "the analytics service")
	flag.StringVar(&a.brokers, "brokers", "localhost:9092", "Kafka bootstrap servers, comma-separated")
	flag.StringVar(&a.prefix, "prefix", "", "the mesh's --kafka-prefix of topic names")
	flag.StringVar(&a.dataDir, "data-dir", ".weft", "the mesh's data dir (mail/, sms/)")
	flag.StringVar(&a.weft, "weft", "./weft", "the weft CLI (for `weft admin grant`)")
	flag.StringVar(&a.kafkaLog, "kafka-log", "warn", "franz-go's log level on stderr: none, error, warn, info, debug")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: check [flags]: calls every RPC of a running mesh and decodes every event type")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fail("unexpected arguments %q", flag.Args())
	}
	for _, t := range eventTypes {
		if _, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(t)); err != nil {
			fail("event type %s is not in the generated code: %v", t, err)
		}
	}

	rpcs(a)
	var notCalled []string
	for name := range everyRPC() {
		if !called[name] {
			notCalled = append(notCalled, name)
		}
	}
	sort.Strings(notCalled)
	check(len(notCalled) == 0, "RPCs not called: %v", notCalled)
	records, skipped := events(a)
	fmt.Printf("go client: %d RPCs called; %d event types decoded from %d records, metadata matching the CloudEvents headers; %d records of unknown types skipped\n",
		len(called), len(eventTypes), records, skipped)
}
