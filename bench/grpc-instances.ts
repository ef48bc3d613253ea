// gRPC instances for the benchmarks, grpc-js servers in this one process, each serving
// `/bench.Bench/Echo` in plain text (h2c):
//   node dist/bench/grpc-instances.js '[{"port":0},{"port":0,"unavailable":true}]'
// `unavailable`: every call is answered UNAVAILABLE (14), as a server that is draining answers
// while its registration is still in ZooKeeper. Prints the ports as one JSON line, then serves
// until SIGTERM.
import * as grpc from '@grpc/grpc-js'
import { benchService } from './grpc-bench-proto.js'

interface Spec {
  readonly port?: number
  readonly unavailable?: boolean
}
const specs = JSON.parse(process.argv[2] ?? '[]') as Spec[]
const service = benchService()
const ports = await Promise.all(
  specs.map(
    (s) =>
      new Promise<number>((resolve, reject) => {
        const server = new grpc.Server()
        server.addService(service, {
          Echo: (call: grpc.ServerUnaryCall<{ text: string }, { text: string }>, cb: grpc.sendUnaryData<{ text: string }>) => {
            if (s.unavailable === true) cb({ code: grpc.status.UNAVAILABLE, details: 'draining' })
            else cb(null, { text: call.request.text })
          },
        })
        server.bindAsync(`127.0.0.1:${s.port ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, port) => (err === null ? resolve(port) : reject(err)))
      }),
  ),
)
console.log(JSON.stringify(ports))
process.once('SIGTERM', () => process.exit(0))
