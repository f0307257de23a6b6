// Preloaded into every node process peer.sh starts (NODE_OPTIONS=--require):
// what js-ipfs 0.66.1, unmaintained since 2023, needs to run as a test peer
// on Node.js 20.
'use strict'

// it-queue (used by mortice, the repo lock) calls Promise.withResolvers,
// which only Node.js 22 has: without it `init` and `daemon` fail with
// "Promise.withResolvers is not a function". Same contract as the built-in.
if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers () {
      const out = {}
      out.promise = new this((resolve, reject) => {
        out.resolve = resolve
        out.reject = reject
      })
      return out
    }
  })
}

// js-ipfs's command line exits the process on the first unhandled promise
// rejection. ipfs-bitswap leaves two of its own rejections unhandled when a
// wanted block stops being wanted: a request cancelled by its `timeout=` or
// by the client hanging up, while the block it waits for is missing from the
// repo (a `cat` of a CID it does not have, a leaf deleted with block/rm). A
// test provokes exactly that on purpose, and the daemon must survive it.
// So every 'unhandledRejection' listener (the command line's included) gets
// those two messages filtered out; anything else still reaches it.
const HARMLESS = [/^Want for \S+ aborted$/, /^Block for \S+ unwanted$/]
const harmless = (reason) =>
  reason instanceof Error && HARMLESS.some((re) => re.test(reason.message))

function filtered (listener) {
  return function (reason, promise) {
    if (harmless(reason)) {
      console.error(`[node20-shim] ignored an unhandled rejection: ${reason.message}`)
      return
    }
    return listener.call(this, reason, promise)
  }
}

// A once-listener is registered as a lasting one, or a filtered rejection
// would use it up; the command line's listener ends the process anyway.
const METHODS = ['on', 'addListener', 'prependListener', 'once', 'prependOnceListener']
const LASTING = { once: 'on', prependOnceListener: 'prependListener' }
const original = Object.fromEntries(METHODS.map((m) => [m, process[m]]))
for (const method of METHODS) {
  const register = original[LASTING[method] || method]
  process[method] = function (event, listener) {
    if (event === 'unhandledRejection' && typeof listener === 'function') {
      return register.call(this, event, filtered(listener))
    }
    return original[method].call(this, event, listener)
  }
}
