// The one gRPC method the benchmarks call, `/bench.Bench/Echo` with a one-string message, as a
// protobufjs JSON descriptor (no .proto file to copy next to dist/), and its wire form for h2load.
import * as protoLoader from '@grpc/proto-loader'
import * as grpc from '@grpc/grpc-js'

export const ECHO_PATH = '/bench.Bench/Echo'

const DESCRIPTOR: Parameters<typeof protoLoader.fromJSON>[0] = {
  nested: {
    bench: {
      nested: {
        Msg: { fields: { text: { type: 'string', id: 1 } } },
        Bench: { methods: { Echo: { requestType: 'Msg', responseType: 'Msg', comment: '' } } },
      },
    },
  },
}

/** The service definition grpc-js servers add and clients are made from. */
export function benchService(): grpc.ServiceDefinition {
  const loaded = grpc.loadPackageDefinition(protoLoader.fromJSON(DESCRIPTOR)) as unknown as {
    bench: { Bench: grpc.ServiceClientConstructor }
  }
  return loaded.bench.Bench.service
}

export interface EchoClient extends grpc.Client {
  Echo(msg: { text: string }, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: { text: string }) => void): grpc.ClientUnaryCall
}

/** A client channel to `127.0.0.1:port` in plain text (h2c with prior knowledge, as grpc-js speaks it). */
export function echoClient(port: number): EchoClient {
  const Ctor = grpc.makeGenericClientConstructor(benchService(), 'Bench')
  return new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as EchoClient
}

/**
 * A gRPC message as it travels in DATA frames (gRPC over HTTP/2, "Length-Prefixed-Message"):
 * a compressed flag byte (0), the length as 4 bytes big-endian, then the message.
 */
export function grpcFrame(message: Buffer): Buffer {
  if (message.length > 0xffff_ffff) throw new RangeError('a gRPC message is at most 4 GiB - 1')
  const out = Buffer.allocUnsafe(5 + message.length)
  out[0] = 0
  out.writeUInt32BE(message.length, 1)
  message.copy(out, 5)
  return out
}

/** `Msg { text }` in protobuf's wire format: field 1, wire type 2 (length-delimited), varint length. */
export function encodeMsg(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8')
  const len: number[] = []
  for (let n = bytes.length; ; n = Math.floor(n / 128)) {
    if (n < 128) {
      len.push(n)
      break
    }
    len.push((n % 128) | 0x80)
  }
  return Buffer.concat([Buffer.from([0x0a, ...len]), bytes])
}

/** One Echo call with a deadline; resolves with the gRPC status code (0 is OK), never rejects. */
export function echoOnce(client: EchoClient, text: string, deadlineMs: number): Promise<{ code: number; details: string }> {
  return new Promise((resolve) => {
    client.Echo({ text }, { deadline: Date.now() + deadlineMs }, (err) => {
      resolve(err === null ? { code: 0, details: '' } : { code: err.code, details: err.details })
    })
  })
}
