"""The contract from Python, against a running mesh: calls every RPC of every service
with code generated from `proto/` by stock grpcio-tools, then reads all three topics
with confluent-kafka and decodes every record by its `ce_type`, checking each event's
`EventMetadata` against its CloudEvents headers. Exits non-zero on the first mismatch.

    python clients/python/check.py --data-dir .weft --weft ./weft
"""

import argparse
import email
import email.policy
import json
import os
import pathlib
import re
import subprocess
import sys
import time

import grpc
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from google.protobuf import descriptor_pool, field_mask_pb2, message_factory

import weft_proto  # noqa: F401  (generates the modules below)
from weft.analytics.v1 import analytics_service_pb2 as an, analytics_service_pb2_grpc as an_grpc
from weft.common.v1 import common_pb2
from weft.notification.v1 import notification_service_pb2 as ns, notification_service_pb2_grpc as ns_grpc
from weft.order.v1 import order_pb2, order_service_pb2 as os_, order_service_pb2_grpc as os_grpc
from weft.user.v1 import user_pb2, user_service_pb2 as us, user_service_pb2_grpc as us_grpc
from weft.user.v1 import user_events_pb2  # noqa: F401
from weft.order.v1 import order_events_pb2  # noqa: F401
from weft.notification.v1 import notification_events_pb2  # noqa: F401

PASSWORD = "correct horse battery 9"
# Names of this run, so that the check can run again against the same mesh.
RUN = f"{int(time.time())}-{os.getpid()}"
TOPICS = ["user-events", "order-events", "notification-events"]
EVENT_TYPES = {
    "weft.user.v1.UserSignedUp", "weft.user.v1.UserUpdated", "weft.user.v1.UserRolesChanged",
    "weft.user.v1.ContactVerificationRequested", "weft.user.v1.ContactVerified",
    "weft.order.v1.OrderCreated", "weft.order.v1.PaymentProcessed", "weft.order.v1.PaymentFailed",
    "weft.order.v1.OrderShipped", "weft.order.v1.OrderDelivered", "weft.order.v1.OrderCancelled",
    "weft.notification.v1.EmailSent", "weft.notification.v1.SmsSent",
}
called = set()


def call(name, fn, request, token=None, **kw):
    md = [("authorization", f"Bearer {token}")] if token else None
    reply = fn(request, metadata=md, timeout=20, **kw)
    called.add(name)
    return reply


def eventually(what, fn, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"python client: {what} did not happen within {seconds} s")


def mail_messages(mail_dir):
    """Every message in the mail dir, oldest first: the `.eml` files (the older format) by
    the time they were written, then the entries of the `<day>.mbox` files (mboxrd) by
    day and position."""
    for path in sorted(mail_dir.glob("*.eml"), key=lambda p: p.stat().st_mtime):
        yield path.read_bytes()
    for path in sorted(mail_dir.glob("*.mbox")):
        raw = path.read_bytes()
        entries = re.split(rb"^From .*\n", raw, flags=re.M)[1:]
        if entries and not raw.endswith(b"\n\n"):
            entries.pop()  # still being written: the next look reads it whole
        for entry in entries:
            yield re.sub(rb"^>(>*From )", rb"\1", entry[:-1], flags=re.M)


def mail_token(data, address):
    for raw in mail_messages(data / "mail"):
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        if address not in str(msg.get("To", "")):
            continue
        body = msg.get_body(("plain",))
        m = body and re.search(r"/verify\?token=([A-Za-z0-9_-]+)", body.get_content())
        if m:
            return m.group(1)
    return None


def sms_code(data, phone):
    for path in sorted((data / "sms").glob("*.json"), key=lambda p: p.stat().st_mtime):
        sms = json.loads(path.read_text())
        m = re.search(r"\b(\d{6})\b", sms["body"])
        if sms["to"] == phone and m:
            return m.group(1)
    return None


def usd(units, nanos):
    return common_pb2.Money(currency_code="USD", units=units, nanos=nanos)


def rpcs(args):
    data = pathlib.Path(args.data_dir)
    users = us_grpc.UserServiceStub(grpc.insecure_channel(args.user))
    orders = os_grpc.OrderServiceStub(grpc.insecure_channel(args.order))
    notes = ns_grpc.NotificationServiceStub(grpc.insecure_channel(args.notification))
    analytics = an_grpc.AnalyticsServiceStub(grpc.insecure_channel(args.analytics))

    # Staff, made by the operator's tool.
    call("SignUp", users.SignUp, us.SignUpRequest(
        email=f"py-staff-{RUN}@example.com", name="Py Staff", password=PASSWORD,
        source=user_pb2.SIGNUP_SOURCE_API))
    subprocess.run([args.weft, "admin", "grant", f"py-staff-{RUN}@example.com", "staff",
                    "--data-dir", str(data)], check=True, capture_output=True)
    staff = call("Login", users.Login, us.LoginRequest(
        email=f"py-staff-{RUN}@example.com", password=PASSWORD)).access_token

    address, phone = f"py-{RUN}@example.com", f"+1555{os.getpid() % 10_000_000:07d}"
    user = call("SignUp", users.SignUp, us.SignUpRequest(
        email=address, name="Py Thon", password=PASSWORD, phone=phone,
        source=user_pb2.SIGNUP_SOURCE_WEB, metadata={"client": "python"})).user
    login = call("Login", users.Login, us.LoginRequest(email=address, password=PASSWORD))
    token, uid = login.access_token, login.user_id
    assert uid == user.user_id
    assert call("GetUser", users.GetUser, us.GetUserRequest(user_id=uid), token).user.email == address
    renamed = call("UpdateUser", users.UpdateUser, us.UpdateUserRequest(
        user=user_pb2.User(user_id=uid, name="Py Thon II"),
        update_mask=field_mask_pb2.FieldMask(paths=["name"])), token).user
    assert renamed.name == "Py Thon II"
    assert call("GetJwks", users.GetJwks, us.GetJwksRequest()).keys
    link = eventually("the verification email", lambda: mail_token(data, address))
    assert call("VerifyEmail", users.VerifyEmail, us.VerifyEmailRequest(token=link)).user.email_verified
    code = eventually("the verification text", lambda: sms_code(data, phone))
    assert call("VerifyPhone", users.VerifyPhone, us.VerifyPhoneRequest(user_id=uid, code=code), token).user.phone_verified
    try:
        call("ResendVerification", users.ResendVerification, us.ResendVerificationRequest(
            user_id=uid, kind=user_pb2.CONTACT_KIND_EMAIL), token)
    except grpc.RpcError as e:
        # Both contacts are verified (or it is too soon): a clear refusal is the answer.
        if e.code() not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED):
            raise
        called.add("ResendVerification")

    products = call("ListProducts", orders.ListProducts, os_.ListProductsRequest()).products
    assert {"mug", "lamp"} <= {p.product_id for p in products}
    mug = call("GetProduct", orders.GetProduct, os_.GetProductRequest(product_id="mug")).product
    assert mug.unit_price == usd(29, 990_000_000)
    call("CreateProduct", orders.CreateProduct, os_.CreateProductRequest(product=order_pb2.Product(
        product_id=f"py-sticker-{RUN}", name="Sticker", unit_price=usd(1, 500_000_000), active=True)), staff)
    call("UpdateProduct", orders.UpdateProduct, os_.UpdateProductRequest(
        product=order_pb2.Product(product_id=f"py-sticker-{RUN}", unit_price=usd(2, 0)),
        update_mask=field_mask_pb2.FieldMask(paths=["unit_price"])), staff)
    items = [order_pb2.OrderItem(product_id="mug", quantity=2), order_pb2.OrderItem(product_id="lamp", quantity=1)]
    order = call("CreateOrder", orders.CreateOrder, os_.CreateOrderRequest(items=items), token).order
    assert order.total == usd(109, 970_000_000), order.total
    card = os_.PaymentCard(number="4242424242424242", exp_month=12, exp_year=2099, cvc="123")
    call("PayOrder", orders.PayOrder, os_.PayOrderRequest(order_id=order.order_id, card=card), token)
    assert call("GetOrder", orders.GetOrder, os_.GetOrderRequest(order_id=order.order_id), token).order.order_id
    assert call("ListOrders", orders.ListOrders, os_.ListOrdersRequest(user_id=uid), token).orders
    call("ShipOrder", orders.ShipOrder, os_.ShipOrderRequest(
        order_id=order.order_id, carrier="UPS", tracking_number="1Z999AA10123456784"), staff)
    call("DeliverOrder", orders.DeliverOrder, os_.DeliverOrderRequest(order_id=order.order_id), staff)
    second = call("CreateOrder", orders.CreateOrder, os_.CreateOrderRequest(
        items=[order_pb2.OrderItem(product_id=f"py-sticker-{RUN}", quantity=3)]), token).order
    declined = os_.PaymentCard(number="4000000000000002", exp_month=12, exp_year=2099, cvc="123")
    try:
        call("PayOrder", orders.PayOrder, os_.PayOrderRequest(order_id=second.order_id, card=declined), token)
        raise SystemExit("python client: a declined card was accepted")
    except grpc.RpcError as e:
        # Declined: FAILED_PRECONDITION, and PaymentFailed on order-events.
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e
    call("CancelOrder", orders.CancelOrder, os_.CancelOrderRequest(order_id=second.order_id, reason="declined"), token)

    listed = eventually("the user's notifications", lambda: call(
        "ListNotifications", notes.ListNotifications, ns.ListNotificationsRequest(user_id=uid), token).notifications)
    call("GetNotification", notes.GetNotification,
         ns.GetNotificationRequest(notification_id=listed[0].notification_id), token)

    # Analytics counts from the events, a moment after the sign-ups were answered.
    eventually("both sign-ups counted by GetMetrics", lambda: call(
        "GetMetrics", analytics.GetMetrics, an.GetMetricsRequest()).metrics.signups >= 2)
    stream = analytics.StreamMetrics(an.StreamMetricsRequest(), metadata=[("authorization", f"Bearer {staff}")], timeout=20)
    assert next(stream).metrics.signups >= 2
    stream.cancel()
    called.add("StreamMetrics")
    assert call("ListRecentEvents", analytics.ListRecentEvents, an.ListRecentEventsRequest(limit=10), staff).events
    hours = call("ListWindows", analytics.ListWindows, an.ListWindowsRequest(width=an.WINDOW_WIDTH_HOUR)).windows
    assert len(hours) == 60 and sum(w.signups for w in hours) >= 2, "ListWindows: the sign-ups are not in the hour windows"
    call("RebuildProjections", analytics.RebuildProjections, an.RebuildProjectionsRequest(), staff)


def every_rpc():
    names = set()
    for module in (us, os_, ns, an):
        for service in module.DESCRIPTOR.services_by_name.values():
            names |= {m.name for m in service.methods}
    return names


def header(msg, name):
    for k, v in msg.headers() or []:
        if k == name:
            return v.decode() if v is not None else None
    return None


def events(args):
    consumer = Consumer({"bootstrap.servers": args.brokers, "group.id": "weft-python-check",
                         "enable.auto.commit": False})
    parts = []
    for topic in (args.prefix + t for t in TOPICS):
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
    consumer.assign(parts)
    seen, records, skipped = set(), 0, 0
    pool = descriptor_pool.Default()
    deadline = time.time() + 60
    while seen != EVENT_TYPES and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        ce_type = header(msg, "ce_type")
        try:
            descriptor = pool.FindMessageTypeByName(ce_type)
        except KeyError:
            # A type added to the contract after this client was built: skipped, as
            # every consumer of the topics must.
            skipped += 1
            continue
        cls = message_factory.GetMessageClass(descriptor)
        event = cls.FromString(msg.value())
        meta = event.metadata
        where = f"{msg.topic()}/{msg.partition()}:{msg.offset()} {ce_type}"
        assert header(msg, "ce_specversion") == "1.0", where
        assert header(msg, "content-type") == "application/protobuf", where
        assert header(msg, "ce_id") == meta.event_id, where
        assert header(msg, "ce_correlationid") == meta.correlation_id, where
        assert (header(msg, "ce_causationid") or "") == meta.causation_id, where
        assert header(msg, "ce_source") == f"/weft/{meta.source_service}", where
        assert meta.source_service in ("user", "order", "notification"), where
        assert header(msg, "ce_time"), where
        seen.add(ce_type)
        records += 1
    consumer.close()
    if seen != EVENT_TYPES:
        raise SystemExit(f"python client: never saw {sorted(EVENT_TYPES - seen)}")
    return records, skipped


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--user", default="localhost:5051")
    p.add_argument("--order", default="localhost:5052")
    p.add_argument("--notification", default="localhost:5053")
    p.add_argument("--analytics", default="localhost:5054")
    p.add_argument("--brokers", default="localhost:9092")
    p.add_argument("--prefix", default="", help="the mesh's --kafka-prefix of topic names")
    p.add_argument("--data-dir", default=".weft")
    p.add_argument("--weft", default="./weft")
    args = p.parse_args()
    rpcs(args)
    missing = every_rpc() - called
    if missing:
        raise SystemExit(f"python client: RPCs not called: {sorted(missing)}")
    records, skipped = events(args)
    print(f"python client: {len(called)} RPCs called; {len(EVENT_TYPES)} event types decoded "
          f"from {records} records, metadata matching the CloudEvents headers; "
          f"{skipped} records of unknown types skipped")


if __name__ == "__main__":
    sys.exit(main())
