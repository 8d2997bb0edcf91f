// A short example: sign up, log in and read yourself back, over gRPC, with the
// contracts loaded from proto/ at run time.
//
//   NODE_PATH=~/.cache/weft/tools/npm/node_modules node clients/node/example.cjs localhost:5051 ada@example.com
"use strict";
const path = require("path");
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const [address, email] = process.argv.slice(2);
const proto = path.resolve(__dirname, "../../proto");
const definition = loader.loadSync("weft/user/v1/user_service.proto", {
  includeDirs: [proto], longs: String, enums: String, defaults: true,
});
const { UserService } = grpc.loadPackageDefinition(definition).weft.user.v1;
const users = new UserService(address, grpc.credentials.createInsecure());
const call = (name, req, md = new grpc.Metadata()) =>
  new Promise((ok, err) => users[name](req, md, (e, r) => (e ? err(e) : ok(r))));

(async () => {
  const password = "correct horse battery 9";
  await call("SignUp", { email, name: "Ada", password, source: "SIGNUP_SOURCE_API" });
  const login = await call("Login", { email, password });
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${login.accessToken}`);
  console.log((await call("GetUser", { userId: login.userId }, md)).user);
})().catch((e) => { console.error(e.message); process.exit(1); });
