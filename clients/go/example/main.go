// Command example is a short example: sign up, log in and read yourself back, over gRPC.
//
//	scripts/client-go example localhost:5051 ada@example.com
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/prototext"

	userv1 "weft.dev/clients/go/gen/weft/user/v1"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: example ADDRESS EMAIL   (e.g. localhost:5051 ada@example.com)")
		os.Exit(2)
	}
	address, email := os.Args[1], os.Args[2]
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	users := userv1.NewUserServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	const password = "correct horse battery 9"
	if _, err := users.SignUp(ctx, &userv1.SignUpRequest{
		Email: email, Name: "Ada", Password: password, Source: userv1.SignupSource_SIGNUP_SOURCE_API,
	}); err != nil {
		fail(err)
	}
	login, err := users.Login(ctx, &userv1.LoginRequest{Email: email, Password: password})
	if err != nil {
		fail(err)
	}
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+login.GetAccessToken())
	me, err := users.GetUser(authed, &userv1.GetUserRequest{UserId: login.GetUserId()})
	if err != nil {
		fail(err)
	}
	fmt.Print(prototext.MarshalOptions{Multiline: true}.Format(me.GetUser()))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "example:", err)
	os.Exit(1)
}
