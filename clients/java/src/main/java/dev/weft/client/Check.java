package dev.weft.client;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.protobuf.Descriptors.FieldDescriptor;
import com.google.protobuf.Descriptors.FileDescriptor;
import com.google.protobuf.Descriptors.MethodDescriptor;
import com.google.protobuf.Descriptors.ServiceDescriptor;
import com.google.protobuf.FieldMask;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import io.grpc.Context;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.AbstractStub;
import io.grpc.stub.MetadataUtils;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.function.Supplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import weft.analytics.v1.AnalyticsServiceGrpc;
import weft.analytics.v1.AnalyticsServiceGrpc.AnalyticsServiceBlockingStub;
import weft.analytics.v1.AnalyticsServiceOuterClass;
import weft.analytics.v1.AnalyticsServiceOuterClass.GetMetricsRequest;
import weft.analytics.v1.AnalyticsServiceOuterClass.ListRecentEventsRequest;
import weft.analytics.v1.AnalyticsServiceOuterClass.ListWindowsRequest;
import weft.analytics.v1.AnalyticsServiceOuterClass.ListWindowsResponse;
import weft.analytics.v1.AnalyticsServiceOuterClass.WindowWidth;
import weft.analytics.v1.AnalyticsServiceOuterClass.RebuildProjectionsRequest;
import weft.analytics.v1.AnalyticsServiceOuterClass.StreamMetricsRequest;
import weft.analytics.v1.AnalyticsServiceOuterClass.StreamMetricsResponse;
import weft.common.v1.Common.EventMetadata;
import weft.common.v1.Common.Money;
import weft.notification.v1.NotificationEvents;
import weft.notification.v1.NotificationOuterClass.Notification;
import weft.notification.v1.NotificationServiceGrpc;
import weft.notification.v1.NotificationServiceGrpc.NotificationServiceBlockingStub;
import weft.notification.v1.NotificationServiceOuterClass;
import weft.notification.v1.NotificationServiceOuterClass.GetNotificationRequest;
import weft.notification.v1.NotificationServiceOuterClass.ListNotificationsRequest;
import weft.order.v1.OrderEvents;
import weft.order.v1.OrderOuterClass.Order;
import weft.order.v1.OrderOuterClass.OrderItem;
import weft.order.v1.OrderOuterClass.Product;
import weft.order.v1.OrderServiceGrpc;
import weft.order.v1.OrderServiceGrpc.OrderServiceBlockingStub;
import weft.order.v1.OrderServiceOuterClass;
import weft.order.v1.OrderServiceOuterClass.CancelOrderRequest;
import weft.order.v1.OrderServiceOuterClass.CreateOrderRequest;
import weft.order.v1.OrderServiceOuterClass.CreateProductRequest;
import weft.order.v1.OrderServiceOuterClass.DeliverOrderRequest;
import weft.order.v1.OrderServiceOuterClass.GetOrderRequest;
import weft.order.v1.OrderServiceOuterClass.GetProductRequest;
import weft.order.v1.OrderServiceOuterClass.ListOrdersRequest;
import weft.order.v1.OrderServiceOuterClass.ListProductsRequest;
import weft.order.v1.OrderServiceOuterClass.PayOrderRequest;
import weft.order.v1.OrderServiceOuterClass.PaymentCard;
import weft.order.v1.OrderServiceOuterClass.ShipOrderRequest;
import weft.order.v1.OrderServiceOuterClass.UpdateProductRequest;
import weft.user.v1.UserEvents;
import weft.user.v1.UserOuterClass.ContactKind;
import weft.user.v1.UserOuterClass.SignupSource;
import weft.user.v1.UserOuterClass.User;
import weft.user.v1.UserServiceGrpc;
import weft.user.v1.UserServiceGrpc.UserServiceBlockingStub;
import weft.user.v1.UserServiceOuterClass;
import weft.user.v1.UserServiceOuterClass.GetJwksRequest;
import weft.user.v1.UserServiceOuterClass.GetUserRequest;
import weft.user.v1.UserServiceOuterClass.LoginRequest;
import weft.user.v1.UserServiceOuterClass.LoginResponse;
import weft.user.v1.UserServiceOuterClass.ResendVerificationRequest;
import weft.user.v1.UserServiceOuterClass.SignUpRequest;
import weft.user.v1.UserServiceOuterClass.UpdateUserRequest;
import weft.user.v1.UserServiceOuterClass.VerifyEmailRequest;
import weft.user.v1.UserServiceOuterClass.VerifyPhoneRequest;

/**
 * The contract from Java, against a running mesh: calls every RPC of every service with code
 * generated from {@code proto/} by stock protoc and protoc-gen-grpc-java (grpc-java over
 * grpc-netty-shaded), then reads all three topics with Apache Kafka's own client as a consumer
 * group, decodes every record by its {@code ce_type} into the generated message type and checks
 * its {@code EventMetadata} against its CloudEvents headers. Exits non-zero on the first
 * mismatch.
 *
 * <pre>
 *   scripts/client-java check --data-dir .weft --weft ./weft
 * </pre>
 */
public final class Check {
  static final String PASSWORD = "correct horse battery 9";
  static final long PID = ProcessHandle.current().pid();
  /** Names of this run, so that the check can run again against the same mesh. */
  static final String RUN = (System.currentTimeMillis() / 1000) + "-" + PID;

  static final List<String> TOPICS = List.of("user-events", "order-events", "notification-events");
  static final Set<String> EVENT_TYPES = Set.of(
      "weft.user.v1.UserSignedUp", "weft.user.v1.UserUpdated", "weft.user.v1.UserRolesChanged",
      "weft.user.v1.ContactVerificationRequested", "weft.user.v1.ContactVerified",
      "weft.order.v1.OrderCreated", "weft.order.v1.PaymentProcessed",
      "weft.order.v1.PaymentFailed", "weft.order.v1.OrderShipped",
      "weft.order.v1.OrderDelivered", "weft.order.v1.OrderCancelled",
      "weft.notification.v1.EmailSent", "weft.notification.v1.SmsSent");
  /** The generated files of the contracts' services, whose every RPC must be called. */
  static final List<FileDescriptor> SERVICE_FILES = List.of(
      UserServiceOuterClass.getDescriptor(), OrderServiceOuterClass.getDescriptor(),
      NotificationServiceOuterClass.getDescriptor(),
      AnalyticsServiceOuterClass.getDescriptor());
  /** The generated files of the events: their message classes decode the records. */
  static final List<Class<?>> EVENT_FILES =
      List.of(UserEvents.class, OrderEvents.class, NotificationEvents.class);

  static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
  static final Pattern MAIL_TOKEN = Pattern.compile("/verify\\?token=([A-Za-z0-9_-]+)");
  static final Pattern SMS_CODE = Pattern.compile("\\b(\\d{6})\\b");

  /** A mismatch: the check fails with this message. */
  static final class Failure extends RuntimeException {
    Failure(String message) {
      super(message);
    }
  }

  static void check(boolean ok, String what) {
    if (!ok) {
      throw new Failure(what);
    }
  }

  private final Map<String, String> args;
  private final Path data;
  private final Set<String> called = new TreeSet<>();
  /** The RPC under way, for the message when one fails unexpectedly. */
  private String current = "";

  Check(Map<String, String> args) {
    this.args = args;
    this.data = Path.of(args.get("data-dir"));
  }

  // --- gRPC ---------------------------------------------------------------------------------

  static ManagedChannel channel(String target) {
    return Grpc.newChannelBuilder(target, InsecureChannelCredentials.create()).build();
  }

  /** The stub with a 20 s deadline from now and, given a token, its bearer header. */
  static <S extends AbstractStub<S>> S with(S stub, String token) {
    S s = stub.withDeadlineAfter(20, TimeUnit.SECONDS);
    if (token != null) {
      Metadata md = new Metadata();
      md.put(AUTHORIZATION, "Bearer " + token);
      s = s.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(md));
    }
    return s;
  }

  <S extends AbstractStub<S>, R> R call(String name, S stub, String token, Function<S, R> rpc) {
    current = name;
    R reply = rpc.apply(with(stub, token));
    called.add(name);
    return reply;
  }

  static boolean truthy(Object value) {
    if (value == null || Boolean.FALSE.equals(value)) {
      return false;
    }
    return !(value instanceof Collection<?> c && c.isEmpty());
  }

  static <T> T eventually(String what, Supplier<T> fn) {
    int seconds = 60;
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
    while (System.nanoTime() < deadline) {
      T value = fn.get();
      if (truthy(value)) {
        return value;
      }
      sleep(200);
    }
    throw new Failure(what + " did not happen within " + seconds + " s");
  }

  static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new Failure("interrupted");
    }
  }

  static Money usd(long units, int nanos) {
    return Money.newBuilder().setCurrencyCode("USD").setUnits(units).setNanos(nanos).build();
  }

  static OrderItem item(String productId, int quantity) {
    return OrderItem.newBuilder().setProductId(productId).setQuantity(quantity).build();
  }

  static FieldMask mask(String path) {
    return FieldMask.newBuilder().addPaths(path).build();
  }

  static String text(Message m) {
    return com.google.protobuf.TextFormat.shortDebugString(m);
  }

  // --- mail and text messages ----------------------------------------------------------------

  /** The files of `dir` named `*ext`, oldest first; none when it does not exist. */
  static List<Path> oldestFirst(Path dir, String ext) {
    if (!Files.isDirectory(dir)) {
      return List.of();
    }
    record Dated(Path path, long mtime) {}
    List<Dated> files = new ArrayList<>();
    try (Stream<Path> list = Files.list(dir)) {
      for (Path p : (Iterable<Path>) list::iterator) {
        if (!p.getFileName().toString().endsWith(ext)) {
          continue;
        }
        try {
          files.add(new Dated(p, Files.getLastModifiedTime(p).toMillis()));
        } catch (NoSuchFileException gone) {
          // Renamed or removed while listing.
        }
      }
    } catch (IOException e) {
      throw new Failure("cannot list " + dir + ": " + e);
    }
    files.sort((a, b) -> Long.compare(a.mtime(), b.mtime()));
    return files.stream().map(Dated::path).collect(Collectors.toList());
  }

  static byte[] read(Path p) {
    try {
      return Files.readAllBytes(p);
    } catch (NoSuchFileException gone) {
      return null;
    } catch (IOException e) {
      throw new Failure("cannot read " + p + ": " + e);
    }
  }

  /**
   * Every message in the mail dir, oldest first: the `.eml` files (the older format) by
   * mtime, then the entries of the `<day>.mbox` files (mboxrd) by day and position.
   */
  static List<byte[]> mailMessages(Path dir) {
    List<byte[]> messages = new ArrayList<>();
    for (Path path : oldestFirst(dir, ".eml")) {
      byte[] raw = read(path);
      if (raw != null) {
        messages.add(raw);
      }
    }
    for (Path path : oldestFirst(dir, ".mbox").stream().sorted().toList()) {
      byte[] raw = read(path);
      if (raw != null) {
        messages.addAll(Mime.mboxEntries(raw));
      }
    }
    return messages;
  }

  /** The token of the first verification link mailed to `address` (oldest mail first), if any. */
  static String mailToken(Path data, String address) {
    for (byte[] raw : mailMessages(data.resolve("mail"))) {
      Mime.Part msg = Mime.parse(raw);
      if (!msg.header("to", "").contains(address)) {
        continue;
      }
      String body = Mime.plainBody(msg);
      Matcher m = body == null ? null : MAIL_TOKEN.matcher(body);
      if (m != null && m.find()) {
        return m.group(1);
      }
    }
    return null;
  }

  /** The code of the first text message to `phone` that carries one, if any. */
  static String smsCode(Path data, String phone) {
    for (Path path : oldestFirst(data.resolve("sms"), ".json")) {
      byte[] raw = read(path);
      if (raw == null) {
        continue;
      }
      JsonObject sms = JsonParser.parseString(new String(raw, StandardCharsets.UTF_8))
          .getAsJsonObject();
      JsonElement to = sms.get("to");
      Matcher m = SMS_CODE.matcher(sms.get("body").getAsString());
      if (to != null && phone.equals(to.getAsString()) && m.find()) {
        return m.group(1);
      }
    }
    return null;
  }

  // --- the RPCs -----------------------------------------------------------------------------

  void grantStaff(String email) throws IOException, InterruptedException {
    List<String> argv = List.of(args.get("weft"), "admin", "grant", email, "staff",
        "--data-dir", data.toString());
    Process p = new ProcessBuilder(argv).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    int code = p.waitFor();
    check(code == 0, String.join(" ", argv) + " exited " + code
        + (out.isBlank() ? "" : ":\n" + out.strip()));
  }

  void rpcs() throws Exception {
    ManagedChannel userChannel = channel(args.get("user"));
    ManagedChannel orderChannel = channel(args.get("order"));
    ManagedChannel notificationChannel = channel(args.get("notification"));
    ManagedChannel analyticsChannel = channel(args.get("analytics"));
    try {
      UserServiceBlockingStub users = UserServiceGrpc.newBlockingStub(userChannel);
      OrderServiceBlockingStub orders = OrderServiceGrpc.newBlockingStub(orderChannel);
      NotificationServiceBlockingStub notes =
          NotificationServiceGrpc.newBlockingStub(notificationChannel);
      AnalyticsServiceBlockingStub analytics =
          AnalyticsServiceGrpc.newBlockingStub(analyticsChannel);
      rpcs(users, orders, notes, analytics);
    } finally {
      for (ManagedChannel c : List.of(userChannel, orderChannel, notificationChannel,
          analyticsChannel)) {
        c.shutdownNow();
      }
    }
  }

  void rpcs(UserServiceBlockingStub users, OrderServiceBlockingStub orders,
      NotificationServiceBlockingStub notes, AnalyticsServiceBlockingStub analytics)
      throws Exception {
    // Staff, made by the operator's tool.
    String staffEmail = "java-staff-" + RUN + "@example.com";
    call("SignUp", users, null, s -> s.signUp(SignUpRequest.newBuilder()
        .setEmail(staffEmail).setName("Java Staff").setPassword(PASSWORD)
        .setSource(SignupSource.SIGNUP_SOURCE_API).build()));
    grantStaff(staffEmail);
    String staff = call("Login", users, null, s -> s.login(LoginRequest.newBuilder()
        .setEmail(staffEmail).setPassword(PASSWORD).build())).getAccessToken();

    String address = "java-" + RUN + "@example.com";
    String phone = String.format("+1557%07d", PID % 10_000_000);
    User user = call("SignUp", users, null, s -> s.signUp(SignUpRequest.newBuilder()
        .setEmail(address).setName("Java Duke").setPassword(PASSWORD).setPhone(phone)
        .setSource(SignupSource.SIGNUP_SOURCE_WEB).putMetadata("client", "java").build()))
        .getUser();
    LoginResponse login = call("Login", users, null, s -> s.login(LoginRequest.newBuilder()
        .setEmail(address).setPassword(PASSWORD).build()));
    String token = login.getAccessToken();
    String uid = login.getUserId();
    check(uid.equals(user.getUserId()), "Login names the signed-up user");
    check(call("GetUser", users, token, s -> s.getUser(GetUserRequest.newBuilder()
        .setUserId(uid).build())).getUser().getEmail().equals(address), "GetUser");
    User renamed = call("UpdateUser", users, token, s -> s.updateUser(
        UpdateUserRequest.newBuilder()
            .setUser(User.newBuilder().setUserId(uid).setName("Java Duke II"))
            .setUpdateMask(mask("name")).build())).getUser();
    check(renamed.getName().equals("Java Duke II"), "UpdateUser: " + text(renamed));
    check(call("GetJwks", users, null, s -> s.getJwks(GetJwksRequest.getDefaultInstance()))
        .getKeysCount() > 0, "GetJwks: no keys");
    String link = eventually("the verification email", () -> mailToken(data, address));
    check(call("VerifyEmail", users, null, s -> s.verifyEmail(VerifyEmailRequest.newBuilder()
        .setToken(link).build())).getUser().getEmailVerified(), "VerifyEmail");
    String code = eventually("the verification text", () -> smsCode(data, phone));
    check(call("VerifyPhone", users, token, s -> s.verifyPhone(VerifyPhoneRequest.newBuilder()
        .setUserId(uid).setCode(code).build())).getUser().getPhoneVerified(), "VerifyPhone");
    try {
      call("ResendVerification", users, token, s -> s.resendVerification(
          ResendVerificationRequest.newBuilder().setUserId(uid)
              .setKind(ContactKind.CONTACT_KIND_EMAIL).build()));
    } catch (StatusRuntimeException e) {
      // Both contacts are verified (or it is too soon): a clear refusal is the answer.
      Status.Code c = e.getStatus().getCode();
      if (c != Status.Code.FAILED_PRECONDITION && c != Status.Code.RESOURCE_EXHAUSTED) {
        throw e;
      }
      called.add("ResendVerification");
    }

    List<Product> products = call("ListProducts", orders, null, s -> s.listProducts(
        ListProductsRequest.getDefaultInstance())).getProductsList();
    Set<String> ids = products.stream().map(Product::getProductId).collect(Collectors.toSet());
    check(ids.containsAll(Set.of("mug", "lamp")), "ListProducts: no mug and lamp in " + ids);
    Product mug = call("GetProduct", orders, null, s -> s.getProduct(GetProductRequest
        .newBuilder().setProductId("mug").build())).getProduct();
    check(mug.getUnitPrice().equals(usd(29, 990_000_000)), "the mug's price: " + text(mug));
    String sticker = "java-sticker-" + RUN;
    call("CreateProduct", orders, staff, s -> s.createProduct(CreateProductRequest.newBuilder()
        .setProduct(Product.newBuilder().setProductId(sticker).setName("Sticker")
            .setUnitPrice(usd(1, 500_000_000)).setActive(true)).build()));
    call("UpdateProduct", orders, staff, s -> s.updateProduct(UpdateProductRequest.newBuilder()
        .setProduct(Product.newBuilder().setProductId(sticker).setUnitPrice(usd(2, 0)))
        .setUpdateMask(mask("unit_price")).build()));
    List<OrderItem> items = List.of(item("mug", 2), item("lamp", 1));
    Order order = call("CreateOrder", orders, token, s -> s.createOrder(CreateOrderRequest
        .newBuilder().addAllItems(items).build())).getOrder();
    check(order.getTotal().equals(usd(109, 970_000_000)), "total " + text(order.getTotal()));
    PaymentCard card = PaymentCard.newBuilder().setNumber("4242424242424242").setExpMonth(12)
        .setExpYear(2099).setCvc("123").build();
    call("PayOrder", orders, token, s -> s.payOrder(PayOrderRequest.newBuilder()
        .setOrderId(order.getOrderId()).setCard(card).build()));
    check(!call("GetOrder", orders, token, s -> s.getOrder(GetOrderRequest.newBuilder()
        .setOrderId(order.getOrderId()).build())).getOrder().getOrderId().isEmpty(), "GetOrder");
    check(call("ListOrders", orders, token, s -> s.listOrders(ListOrdersRequest.newBuilder()
        .setUserId(uid).build())).getOrdersCount() > 0, "ListOrders: none");
    call("ShipOrder", orders, staff, s -> s.shipOrder(ShipOrderRequest.newBuilder()
        .setOrderId(order.getOrderId()).setCarrier("UPS")
        .setTrackingNumber("1Z999AA10123456784").build()));
    call("DeliverOrder", orders, staff, s -> s.deliverOrder(DeliverOrderRequest.newBuilder()
        .setOrderId(order.getOrderId()).build()));
    Order second = call("CreateOrder", orders, token, s -> s.createOrder(CreateOrderRequest
        .newBuilder().addItems(item(sticker, 3)).build())).getOrder();
    PaymentCard declined = card.toBuilder().setNumber("4000000000000002").build();
    try {
      call("PayOrder", orders, token, s -> s.payOrder(PayOrderRequest.newBuilder()
          .setOrderId(second.getOrderId()).setCard(declined).build()));
      throw new Failure("a declined card was accepted");
    } catch (StatusRuntimeException e) {
      // Declined: FAILED_PRECONDITION, and PaymentFailed on order-events.
      check(e.getStatus().getCode() == Status.Code.FAILED_PRECONDITION,
          "declined PayOrder: " + e.getStatus());
    }
    call("CancelOrder", orders, token, s -> s.cancelOrder(CancelOrderRequest.newBuilder()
        .setOrderId(second.getOrderId()).setReason("declined").build()));

    List<Notification> listed = eventually("the user's notifications", () -> call(
        "ListNotifications", notes, token, s -> s.listNotifications(ListNotificationsRequest
            .newBuilder().setUserId(uid).build())).getNotificationsList());
    call("GetNotification", notes, token, s -> s.getNotification(GetNotificationRequest
        .newBuilder().setNotificationId(listed.get(0).getNotificationId()).build()));

    // Analytics counts from the events, a moment after the sign-ups were answered.
    eventually("both sign-ups counted by GetMetrics", () -> call("GetMetrics", analytics, null,
        s -> s.getMetrics(GetMetricsRequest.getDefaultInstance())).getMetrics().getSignups()
        >= 2);
    current = "StreamMetrics";
    StreamMetricsResponse first;
    // The stream lives in this context: closing it cancels the call after one message.
    try (Context.CancellableContext stream = Context.current().withCancellation()) {
      first = stream.call(() -> {
        Iterator<StreamMetricsResponse> it =
            with(analytics, staff).streamMetrics(StreamMetricsRequest.getDefaultInstance());
        return it.next();
      });
    }
    check(first.getMetrics().getSignups() >= 2, "StreamMetrics' first message: "
        + text(first.getMetrics()));
    called.add("StreamMetrics");
    check(call("ListRecentEvents", analytics, staff, s -> s.listRecentEvents(
        ListRecentEventsRequest.newBuilder().setLimit(10).build())).getEventsCount() > 0,
        "ListRecentEvents: none");
    ListWindowsResponse hours = call("ListWindows", analytics, null, s -> s.listWindows(
        ListWindowsRequest.newBuilder().setWidth(WindowWidth.WINDOW_WIDTH_HOUR).build()));
    long signups = hours.getWindowsList().stream().mapToLong(w -> w.getSignups()).sum();
    check(hours.getWindowsCount() == 60 && signups >= 2, "ListWindows: "
        + hours.getWindowsCount() + " hour windows, " + signups + " sign-ups in them");
    call("RebuildProjections", analytics, staff, s -> s.rebuildProjections(
        RebuildProjectionsRequest.getDefaultInstance()));
    current = "";
  }

  /** Every RPC of every service, from the generated descriptors. */
  static Set<String> everyRpc() {
    Set<String> names = new TreeSet<>();
    for (FileDescriptor file : SERVICE_FILES) {
      for (ServiceDescriptor service : file.getServices()) {
        for (MethodDescriptor method : service.getMethods()) {
          names.add(method.getName());
        }
      }
    }
    return names;
  }

  // --- the events ---------------------------------------------------------------------------

  /** Each event's full proto name to its generated class (its default instance). */
  static Map<String, Message> eventRegistry() throws ReflectiveOperationException {
    Map<String, Message> byName = new HashMap<>();
    for (Class<?> file : EVENT_FILES) {
      for (Class<?> c : file.getDeclaredClasses()) {
        if (Message.class.isAssignableFrom(c)) {
          Message m = (Message) c.getMethod("getDefaultInstance").invoke(null);
          byName.put(m.getDescriptorForType().getFullName(), m);
        }
      }
    }
    return byName;
  }

  static String header(ConsumerRecord<?, ?> record, String name) {
    for (Header h : record.headers().headers(name)) {
      return h.value() == null ? null : new String(h.value(), StandardCharsets.UTF_8);
    }
    return null;
  }

  static void same(String where, String what, Object header, Object metadata) {
    check(java.util.Objects.equals(header, metadata),
        where + ": " + what + " '" + header + "' != metadata's '" + metadata + "'");
  }

  /** Records of types this client has no generated class for, skipped by {@link #events}. */
  int skipped;

  int events() throws ReflectiveOperationException {
    Map<String, Message> registry = eventRegistry();
    String prefix = args.get("prefix");
    Properties config = new Properties();
    config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args.get("brokers"));
    // A group of its own each run, read from the beginning (nothing committed).
    config.put(ConsumerConfig.GROUP_ID_CONFIG,
        prefix + "weft-java-check-" + PID + "-" + System.currentTimeMillis());
    config.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
    config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    config.put(ConsumerConfig.CLIENT_ID_CONFIG, "weft-java-check");
    config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
    config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
    Set<String> seen = new TreeSet<>();
    int records = 0;
    skipped = 0;
    try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(config)) {
      consumer.subscribe(TOPICS.stream().map(t -> prefix + t).collect(Collectors.toList()));
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
      while (!seen.containsAll(EVENT_TYPES) && System.nanoTime() < deadline) {
        for (ConsumerRecord<byte[], byte[]> msg : consumer.poll(Duration.ofMillis(500))) {
          String ceType = header(msg, "ce_type");
          String where = msg.topic() + "/" + msg.partition() + ":" + msg.offset() + " " + ceType;
          Message type = registry.get(ceType);
          if (type == null) {
            // A type added to the contract after this client was built: skipped, as every
            // consumer of the topics must.
            skipped += 1;
            continue;
          }
          check(msg.value() != null, where + ": no value");
          Message event;
          try {
            event = type.getParserForType().parseFrom(msg.value());
          } catch (InvalidProtocolBufferException e) {
            throw new Failure(where + ": does not decode: " + e.getMessage());
          }
          FieldDescriptor field = event.getDescriptorForType().findFieldByName("metadata");
          check(field != null && field.getMessageType() == EventMetadata.getDescriptor(),
              where + ": no EventMetadata field 'metadata'");
          EventMetadata meta = (EventMetadata) event.getField(field);
          same(where, "ce_specversion", header(msg, "ce_specversion"), "1.0");
          same(where, "content-type", header(msg, "content-type"), "application/protobuf");
          same(where, "ce_id", header(msg, "ce_id"), meta.getEventId());
          same(where, "ce_correlationid", header(msg, "ce_correlationid"),
              meta.getCorrelationId());
          String causation = header(msg, "ce_causationid");
          same(where, "ce_causationid", causation == null ? "" : causation,
              meta.getCausationId());
          same(where, "ce_source", header(msg, "ce_source"),
              "/weft/" + meta.getSourceService());
          check(Set.of("user", "order", "notification").contains(meta.getSourceService()),
              where + ": source_service '" + meta.getSourceService() + "'");
          String time = header(msg, "ce_time");
          check(time != null && !time.isEmpty(), where + ": no ce_time");
          seen.add(ceType);
          records += 1;
        }
      }
    }
    Set<String> missing = new TreeSet<>(EVENT_TYPES);
    missing.removeAll(seen);
    check(missing.isEmpty(), "never saw " + missing);
    return records;
  }

  // --- main ---------------------------------------------------------------------------------

  static final String USAGE = String.join("\n",
      "usage: scripts/client-java check [--user HOST:PORT] [--order HOST:PORT]",
      "           [--notification HOST:PORT] [--analytics HOST:PORT] [--brokers LIST]",
      "           [--prefix PREFIX] [--data-dir DIR] [--weft PATH]",
      "",
      "Calls every RPC of every weft service, then decodes every event of the three topics",
      "and checks its EventMetadata against its CloudEvents headers.",
      "  --prefix    the mesh's --kafka-prefix of topic names (default none)",
      "  --data-dir  the mesh's data dir: mail/*.{mbox,eml}, sms/*.json (default .weft)",
      "  --weft      the weft CLI, for `weft admin grant` (default ./weft)");

  static Map<String, String> parse(String[] argv) {
    Map<String, String> a = new LinkedHashMap<>();
    a.put("user", "localhost:5051");
    a.put("order", "localhost:5052");
    a.put("notification", "localhost:5053");
    a.put("analytics", "localhost:5054");
    a.put("brokers", "localhost:9092");
    a.put("prefix", "");
    a.put("data-dir", ".weft");
    a.put("weft", "./weft");
    for (int i = 0; i < argv.length; i++) {
      String arg = argv[i];
      if (arg.equals("-h") || arg.equals("--help")) {
        System.out.println(USAGE);
        System.exit(0);
      }
      String key;
      String value;
      int eq = arg.indexOf('=');
      if (arg.startsWith("--") && eq > 0) {
        key = arg.substring(2, eq);
        value = arg.substring(eq + 1);
      } else if (arg.startsWith("--") && i + 1 < argv.length) {
        key = arg.substring(2);
        value = argv[++i];
      } else {
        key = null;
        value = null;
      }
      if (key == null || !a.containsKey(key)) {
        System.err.println(USAGE);
        System.err.println("java client: unknown or incomplete argument " + arg);
        System.exit(2);
      }
      a.put(key, value);
    }
    return a;
  }

  public static void main(String[] argv) {
    Check c = new Check(parse(argv));
    try {
      c.rpcs();
      Set<String> missing = everyRpc();
      missing.removeAll(c.called);
      check(missing.isEmpty(), "RPCs not called: " + missing);
      int records = c.events();
      System.out.println("java client: " + c.called.size() + " RPCs called; "
          + EVENT_TYPES.size() + " event types decoded from " + records
          + " records, metadata matching the CloudEvents headers; " + c.skipped
          + " records of unknown types skipped");
      System.out.flush();
      System.exit(0);
    } catch (Failure e) {
      System.err.println("java client: " + e.getMessage());
    } catch (StatusRuntimeException e) {
      System.err.println("java client: " + c.current + " failed: " + e.getStatus());
      e.printStackTrace();
    } catch (org.apache.kafka.common.KafkaException e) {
      System.err.println("java client: Kafka: " + e);
      e.printStackTrace();
    } catch (Exception e) {
      System.err.println("java client: " + e);
      e.printStackTrace();
    }
    System.exit(1);
  }
}
