package dev.weft.client;

import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import java.util.concurrent.TimeUnit;
import weft.user.v1.UserOuterClass.SignupSource;
import weft.user.v1.UserServiceGrpc;
import weft.user.v1.UserServiceGrpc.UserServiceBlockingStub;
import weft.user.v1.UserServiceOuterClass.GetUserRequest;
import weft.user.v1.UserServiceOuterClass.GetUserResponse;
import weft.user.v1.UserServiceOuterClass.LoginRequest;
import weft.user.v1.UserServiceOuterClass.LoginResponse;
import weft.user.v1.UserServiceOuterClass.SignUpRequest;

/**
 * A short example: sign up, log in and read yourself back, over gRPC.
 *
 * <pre>
 *   scripts/client-java example localhost:5051 ada@example.com
 * </pre>
 */
public final class Example {
  private Example() {}

  public static void main(String[] args) throws InterruptedException {
    if (args.length != 2) {
      System.err.println("usage: scripts/client-java example HOST:PORT EMAIL");
      System.exit(2);
    }
    String address = args[0];
    String email = args[1];
    String password = "correct horse battery 9";
    ManagedChannel channel =
        Grpc.newChannelBuilder(address, InsecureChannelCredentials.create()).build();
    try {
      UserServiceBlockingStub users = UserServiceGrpc.newBlockingStub(channel);
      users.withDeadlineAfter(20, TimeUnit.SECONDS).signUp(SignUpRequest.newBuilder()
          .setEmail(email).setName("Ada").setPassword(password)
          .setSource(SignupSource.SIGNUP_SOURCE_API).build());
      LoginResponse login = users.withDeadlineAfter(20, TimeUnit.SECONDS).login(
          LoginRequest.newBuilder().setEmail(email).setPassword(password).build());
      Metadata bearer = new Metadata();
      bearer.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER),
          "Bearer " + login.getAccessToken());
      GetUserResponse me = users.withDeadlineAfter(20, TimeUnit.SECONDS)
          .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(bearer))
          .getUser(GetUserRequest.newBuilder().setUserId(login.getUserId()).build());
      System.out.print(me.getUser());
    } catch (StatusRuntimeException e) {
      System.err.println("java example: " + e.getStatus());
      System.exit(1);
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }
}
