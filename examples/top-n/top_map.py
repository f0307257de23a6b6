# Step 2 reads the (word, count) pairs step 1 wrote, as they were.
def map(word, count):
    yield "top", [count, word]
