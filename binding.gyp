{
  "targets": [
    {
      "target_name": "tinyvine_native",
      "sources": [
        "shared/native/crypto.c",
        "shared/native/engine.c",
        "shared/native/ghash-wide.c",
        "shared/native/mss.c",
        "shared/native/napi-util.c",
        "shared/native/offload.c",
        "shared/native/pumps.c",
        "shared/native/replay.c",
        "shared/native/session-api.c",
        "shared/native/session.c",
        "shared/native/tun-rx.c",
        "shared/native/tun.c",
        "shared/native/tx.c",
        "shared/native/udp-rx.c",
        "shared/native/udp.c",
        "shared/native/wake.c"
      ],
      "defines": ["_GNU_SOURCE"],
      "cflags": ["-O2", "-Wall", "-Wno-deprecated-declarations", "-fvisibility=hidden"],
      "cflags_c": ["-std=gnu11"]
    }
  ]
}
