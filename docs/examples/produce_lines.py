"""Write a text file to a Kafka topic, one record per line, with kafka-python: a client
that is not librdkafka, for a topic wordpipe counts as a source (docs/producing.md).

    pip install kafka-python
    python produce_lines.py --bootstrap 127.0.0.1:9092 --topic lines book.txt
    wordpipe run --source lines --bootstrap 127.0.0.1:9092     # or: wordpipe up --source lines
"""

import argparse

from kafka import KafkaProducer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("file")
    args = parser.parse_args()
    # acks="all": a line the broker acknowledged is kept, and wordpipe counts it exactly once.
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=5)
    sent = 0
    with open(args.file, "rb") as lines:
        for line in lines:
            producer.send(args.topic, line.rstrip(b"\r\n"))  # the value is the text: UTF-8, any length
            sent += 1
    producer.flush()
    producer.close()
    print(f"{sent} lines written to {args.topic}")


if __name__ == "__main__":
    main()
