"""Whole answers from a running pad_server through pad_client, for the evaluations and the training data: one
request's text, finish reason and token count, and many requests at once (the server batches concurrent
streams). RESOURCE_EXHAUSTED (the queue is full) and UNAVAILABLE (loading, draining) are retried with backoff.

    answer(client, {"prompt": "Tell me about owls", "principles": ["concise"], "max_new_tokens": 64})
    -> {"text": "...", "finish_reason": "stop", "generated_tokens": 41}

A request is a dict of pad_client.build_request's keyword arguments plus "prompt", one user message.
"""
import concurrent.futures
import time

import grpc
from pad_client import Final


def answer(client, request, timeout=600.0, retries=5):
    """{"text", "finish_reason" ("stop", "length", "cancelled"), "generated_tokens"} of one request on
    `client` (a pad_client.PadClient). Other gRPC errors, and the last retry's, are raised."""
    fields = dict(request)
    prompt = fields.pop("prompt")
    for attempt in range(retries + 1):
        pieces, final = [], None
        try:
            for event in client.generate_aligned([{"role": "user", "content": prompt}], timeout=timeout, **fields):
                if isinstance(event, Final):
                    final = event
                else:
                    pieces.append(event.text)
        except grpc.RpcError as e:
            transient = e.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)
            if not transient or attempt == retries:
                raise
            time.sleep(0.5 * 2 ** attempt)
            continue
        if final is None:
            raise RuntimeError("stream ended without a final message")
        return {"text": "".join(pieces), "finish_reason": final.finish_reason,
                "generated_tokens": final.usage.generated_tokens}


def answer_all(client, requests, concurrency=12, timeout=600.0, retries=5):
    """answer() of each request, `concurrency` streams at a time; in the order of `requests`."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(lambda r: answer(client, r, timeout, retries), requests))
