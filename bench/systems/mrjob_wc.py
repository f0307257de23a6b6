"""mrjob, `local` runner (Hadoop Streaming emulated with subprocesses),
with a combiner.

    python mrjob_wc.py -r local --num-cores 2 --output-dir OUT_DIR INPUT
writes OUT_DIR/part-* (JSON "word"<TAB>count)
"""
from mrjob.job import MRJob


class WordCount(MRJob):
    def mapper(self, _, line):
        for w in line.split():
            yield w, 1

    def combiner(self, w, counts):
        yield w, sum(counts)

    def reducer(self, w, counts):
        yield w, sum(counts)


if __name__ == "__main__":
    WordCount.run()
