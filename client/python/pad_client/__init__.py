"""Python client for PAD Serving (pad.v1 over gRPC):

    from pad_client import PadClient, Final
    with PadClient("localhost:50051") as client:
        for event in client.generate_aligned([{"role": "user", "content": "Tell me about owls"}],
                                             principles=["humorous"], max_new_tokens=64):
            print(event.usage if isinstance(event, Final) else event.text, end="", flush=True)
"""
from pad_client.client import AsyncPadClient, Delta, Event, Final, PadClient, Token, Usage, build_request

__all__ = ["AsyncPadClient", "Delta", "Event", "Final", "PadClient", "Token", "Usage", "build_request"]
