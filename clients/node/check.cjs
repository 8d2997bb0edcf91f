// The contract from Node, against a running mesh: loads weft's contracts straight
// from proto/ (@grpc/proto-loader, protobufjs), calls every RPC of every service with
// @grpc/grpc-js, then reads all three topics with kafkajs and decodes every record by
// its ce_type, checking each event's EventMetadata against its CloudEvents headers.
// Exits non-zero on the first mismatch.
//
//   node clients/node/check.cjs --data-dir .weft --weft ./weft
"use strict";
const fs = require("fs");
const path = require("path");
const { execFileSync } = require("child_process");
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");
const { Kafka, logLevel } = require("kafkajs");

const PROTO = path.resolve(__dirname, "../../proto");
const PASSWORD = "correct horse battery 9";
const RUN = `${Date.now()}-${process.pid}`;
const TOPICS = ["user-events", "order-events", "notification-events"];
const EVENT_TYPES = [
  "weft.user.v1.UserSignedUp", "weft.user.v1.UserUpdated", "weft.user.v1.UserRolesChanged",
  "weft.user.v1.ContactVerificationRequested", "weft.user.v1.ContactVerified",
  "weft.order.v1.OrderCreated", "weft.order.v1.PaymentProcessed", "weft.order.v1.PaymentFailed",
  "weft.order.v1.OrderShipped", "weft.order.v1.OrderDelivered", "weft.order.v1.OrderCancelled",
  "weft.notification.v1.EmailSent", "weft.notification.v1.SmsSent",
];

function args() {
  const a = {
    user: "localhost:5051", order: "localhost:5052", notification: "localhost:5053",
    analytics: "localhost:5054", brokers: "localhost:9092", "data-dir": ".weft", weft: "./weft",
    prefix: "", // the mesh's --kafka-prefix of topic names
  };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    if (!(key in a) || argv[i + 1] === undefined) throw new Error(`unknown or incomplete flag ${argv[i]}`);
    a[key] = argv[i + 1];
  }
  return a;
}

function protoFiles() {
  const out = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".proto")) out.push(path.relative(PROTO, p));
    }
  };
  walk(path.join(PROTO, "weft"));
  return out;
}

function fail(msg) {
  throw new Error(`node client: ${msg}`);
}

function assert(cond, msg) {
  if (!cond) fail(msg);
}

const called = new Set();

function caller(client, token) {
  return (name, request, tok = token) =>
    new Promise((resolve, reject) => {
      const md = new grpc.Metadata();
      if (tok) md.set("authorization", `Bearer ${tok}`);
      client[name](request, md, { deadline: Date.now() + 20000 }, (err, reply) => {
        called.add(name);
        if (err) reject(err);
        else resolve(reply);
      });
    });
}

async function eventually(what, fn, seconds = 60) {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    const v = fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  fail(`${what} did not happen within ${seconds} s`);
}

// The files of dir named *ext, by name.
function named(dir, ext) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((f) => f.endsWith(ext)).sort().map((f) => path.join(dir, f));
}

function newest(dir, ext) {
  return named(dir, ext).sort((a, b) => fs.statSync(a).mtimeMs - fs.statSync(b).mtimeMs);
}

// Every message in the mail dir, oldest first: the .eml files (the older format) by
// mtime, then the entries of the <day>.mbox files (mboxrd) by day and position.
function mailMessages(dir) {
  const messages = newest(dir, ".eml").map((file) => fs.readFileSync(file, "utf8"));
  for (const file of named(dir, ".mbox")) {
    const raw = fs.readFileSync(file, "utf8");
    const entries = raw.split(/^From .*\n/m).slice(1);
    // An entry not yet ended by its blank line is still being written.
    if (!raw.endsWith("\n\n")) entries.pop();
    messages.push(...entries.map((e) => e.slice(0, -1).replace(/^>(>*From )/gm, "$1")));
  }
  return messages;
}

function mailToken(data, address) {
  for (const message of mailMessages(path.join(data, "mail"))) {
    // Undo quoted-printable soft breaks and escapes before looking for the link.
    const text = message.replace(/=\r?\n/g, "").replace(/=3D/g, "=");
    const to = /^To: (.*)$/m.exec(text);
    if (!to || !to[1].includes(address)) continue;
    const m = /\/verify\?token=([A-Za-z0-9_-]+)/.exec(text);
    if (m) return m[1];
  }
  return null;
}

function smsCode(data, phone) {
  for (const file of newest(path.join(data, "sms"), ".json")) {
    const sms = JSON.parse(fs.readFileSync(file, "utf8"));
    const m = /\b(\d{6})\b/.exec(sms.body);
    if (sms.to === phone && m) return m[1];
  }
  return null;
}

const usd = (units, nanos) => ({ currencyCode: "USD", units: String(units), nanos });

async function rpcs(a, pkg) {
  const creds = grpc.credentials.createInsecure();
  const users = caller(new pkg.weft.user.v1.UserService(a.user, creds));
  const orders = caller(new pkg.weft.order.v1.OrderService(a.order, creds));
  const notes = caller(new pkg.weft.notification.v1.NotificationService(a.notification, creds));
  const analyticsClient = new pkg.weft.analytics.v1.AnalyticsService(a.analytics, creds);
  const analytics = caller(analyticsClient);

  const staffEmail = `node-staff-${RUN}@example.com`;
  await users("SignUp", { email: staffEmail, name: "Node Staff", password: PASSWORD, source: "SIGNUP_SOURCE_API" });
  execFileSync(a.weft, ["admin", "grant", staffEmail, "staff", "--data-dir", a["data-dir"]]);
  const staff = (await users("Login", { email: staffEmail, password: PASSWORD })).accessToken;

  const address = `node-${RUN}@example.com`;
  const phone = `+1556${String(process.pid % 10000000).padStart(7, "0")}`;
  const { user } = await users("SignUp", {
    email: address, name: "Node Js", password: PASSWORD, phone, source: "SIGNUP_SOURCE_WEB",
    metadata: { client: "node" },
  });
  const login = await users("Login", { email: address, password: PASSWORD });
  const token = login.accessToken;
  const uid = login.userId;
  assert(uid === user.userId, "Login names the signed-up user");
  assert((await users("GetUser", { userId: uid }, token)).user.email === address, "GetUser");
  const renamed = await users("UpdateUser", { user: { userId: uid, name: "Node Js II" }, updateMask: { paths: ["name"] } }, token);
  assert(renamed.user.name === "Node Js II", "UpdateUser");
  assert((await users("GetJwks", {})).keys.length > 0, "GetJwks");
  const link = await eventually("the verification email", () => mailToken(a["data-dir"], address));
  assert((await users("VerifyEmail", { token: link })).user.emailVerified, "VerifyEmail");
  const code = await eventually("the verification text", () => smsCode(a["data-dir"], phone));
  assert((await users("VerifyPhone", { userId: uid, code }, token)).user.phoneVerified, "VerifyPhone");
  try {
    await users("ResendVerification", { userId: uid, kind: "CONTACT_KIND_EMAIL" }, token);
  } catch (e) {
    assert([grpc.status.FAILED_PRECONDITION, grpc.status.RESOURCE_EXHAUSTED].includes(e.code), `ResendVerification: ${e.message}`);
  }

  const { products } = await orders("ListProducts", {});
  assert(products.some((p) => p.productId === "mug"), "ListProducts has the mug");
  const { product: mug } = await orders("GetProduct", { productId: "mug" });
  assert(mug.unitPrice.units === "29" && mug.unitPrice.nanos === 990000000, "the mug's price");
  const sticker = `node-sticker-${RUN}`;
  await orders("CreateProduct", { product: { productId: sticker, name: "Sticker", unitPrice: usd(1, 500000000), active: true } }, staff);
  await orders("UpdateProduct", { product: { productId: sticker, unitPrice: usd(2, 0) }, updateMask: { paths: ["unit_price"] } }, staff);
  const { order } = await orders("CreateOrder", { items: [{ productId: "mug", quantity: 2 }, { productId: "lamp", quantity: 1 }] }, token);
  assert(order.total.units === "109" && order.total.nanos === 970000000, `total ${JSON.stringify(order.total)}`);
  const card = { number: "4242424242424242", expMonth: 12, expYear: 2099, cvc: "123" };
  await orders("PayOrder", { orderId: order.orderId, card }, token);
  assert((await orders("GetOrder", { orderId: order.orderId }, token)).order.orderId === order.orderId, "GetOrder");
  assert((await orders("ListOrders", { userId: uid }, token)).orders.length >= 1, "ListOrders");
  await orders("ShipOrder", { orderId: order.orderId, carrier: "UPS", trackingNumber: "1Z999AA10123456784" }, staff);
  await orders("DeliverOrder", { orderId: order.orderId }, staff);
  const { order: second } = await orders("CreateOrder", { items: [{ productId: sticker, quantity: 3 }] }, token);
  try {
    await orders("PayOrder", { orderId: second.orderId, card: { ...card, number: "4000000000000002" } }, token);
    fail("a declined card was accepted");
  } catch (e) {
    assert(e.code === grpc.status.FAILED_PRECONDITION, `declined PayOrder: ${e.message}`);
  }
  await orders("CancelOrder", { orderId: second.orderId, reason: "declined" }, token);

  return { notes, analytics, analyticsClient, uid, token, staff };
}

async function notificationsAndAnalytics(ctx) {
  const { notes, analytics, analyticsClient, uid, token, staff } = ctx;
  let listed = [];
  const deadline = Date.now() + 60000;
  while (listed.length === 0 && Date.now() < deadline) {
    listed = (await notes("ListNotifications", { userId: uid }, token)).notifications;
    if (listed.length === 0) await new Promise((r) => setTimeout(r, 200));
  }
  assert(listed.length > 0, "ListNotifications");
  await notes("GetNotification", { notificationId: listed[0].notificationId }, token);

  // Analytics counts from the events, a moment after the sign-ups were answered.
  const counted = Date.now() + 60000;
  while (Number((await analytics("GetMetrics", {})).metrics.signups) < 2) {
    assert(Date.now() < counted, "GetMetrics: both sign-ups counted within 60 s");
    await new Promise((r) => setTimeout(r, 200));
  }
  await new Promise((resolve, reject) => {
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${staff}`);
    const stream = analyticsClient.StreamMetrics({}, md, { deadline: Date.now() + 20000 });
    stream.on("data", (m) => {
      called.add("StreamMetrics");
      if (Number(m.metrics.signups) < 2) reject(new Error("StreamMetrics' first message"));
      stream.cancel();
      resolve();
    });
    stream.on("error", (e) => (e.code === grpc.status.CANCELLED ? resolve() : reject(e)));
  });
  assert((await analytics("ListRecentEvents", { limit: 10 }, staff)).events.length > 0, "ListRecentEvents");
  const hours = (await analytics("ListWindows", { width: "WINDOW_WIDTH_HOUR" })).windows;
  assert(hours.length === 60 && hours.reduce((n, w) => n + Number(w.signups), 0) >= 2,
    "ListWindows: the sign-ups are not in the hour windows");
  await analytics("RebuildProjections", {}, staff);
}

function everyRpc(pkg) {
  const names = new Set();
  for (const svc of [pkg.weft.user.v1.UserService, pkg.weft.order.v1.OrderService,
    pkg.weft.notification.v1.NotificationService, pkg.weft.analytics.v1.AnalyticsService]) {
    for (const m of Object.values(svc.service)) names.add(m.path.split("/").pop());
  }
  return names;
}

async function events(a, root) {
  const kafka = new Kafka({ clientId: "weft-node-check", brokers: a.brokers.split(","), logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: `${a.prefix}weft-node-check-${RUN}` });
  await consumer.connect();
  await consumer.subscribe({ topics: TOPICS.map((t) => a.prefix + t), fromBeginning: true });
  const seen = new Set();
  let records = 0;
  let skipped = 0;
  let failure = null;
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      try {
        const h = (name) => (message.headers[name] === undefined ? undefined : message.headers[name].toString());
        const ceType = h("ce_type");
        const type = root.lookup(ceType);
        if (!(type instanceof protobuf.Type)) {
          // A type added to the contract after this client was built: skipped, as every
          // consumer of the topics must.
          skipped += 1;
          return;
        }
        const event = type.decode(message.value);
        const meta = event.metadata;
        const where = `${topic}/${partition}:${message.offset} ${ceType}`;
        assert(h("ce_specversion") === "1.0", where);
        assert(h("content-type") === "application/protobuf", where);
        assert(h("ce_id") === meta.eventId, `${where}: ce_id`);
        assert(h("ce_correlationid") === meta.correlationId, `${where}: correlation`);
        assert((h("ce_causationid") || "") === meta.causationId, `${where}: causation`);
        assert(h("ce_source") === `/weft/${meta.sourceService}`, `${where}: source ${h("ce_source")}`);
        assert(["user", "order", "notification"].includes(meta.sourceService), `${where}: service`);
        seen.add(ceType);
        records += 1;
      } catch (e) {
        failure = failure || e;
      }
    },
  });
  const deadline = Date.now() + 60000;
  while (!failure && seen.size < EVENT_TYPES.length && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
  }
  await consumer.disconnect();
  if (failure) throw failure;
  const missing = EVENT_TYPES.filter((t) => !seen.has(t));
  if (missing.length) fail(`never saw ${missing.join(", ")}`);
  return { records, skipped };
}

async function main() {
  const a = args();
  const files = protoFiles();
  const definition = loader.loadSync(files, {
    includeDirs: [PROTO], keepCase: false, longs: String, enums: String, defaults: true, oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition);
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (fs.existsSync(path.join(PROTO, target)) ? path.join(PROTO, target) : target);
  root.loadSync(files.map((f) => path.join(PROTO, f)), { keepCase: false });
  root.resolveAll();

  const ctx = await rpcs(a, pkg);
  await notificationsAndAnalytics(ctx);
  const missing = [...everyRpc(pkg)].filter((n) => !called.has(n));
  if (missing.length) fail(`RPCs not called: ${missing.join(", ")}`);
  const { records, skipped } = await events(a, root);
  console.log(`node client: ${called.size} RPCs called; ${EVENT_TYPES.length} event types decoded from ${records} records, metadata matching the CloudEvents headers; ${skipped} records of unknown types skipped`);
}

main().then(() => process.exit(0), (e) => { console.error(e.stack || String(e)); process.exit(1); });
