"""Broad user prompts and free-text principle wordings for the PRM's best-of-n pairs (broad.py).

Written here for training, without looking at eval/prompts' general, harmful or benign_edgy files. The
prompts are request forms over subjects from many domains, plus requests written whole (rewrites with inline
text, arithmetic, code, small talk), in several registers: a PRM trained on one sentence frame learns the
frame (EXPERIMENTS.md, issue 28). The wordings are paraphrases of each principle written for training; they
differ from eval/prompts/principles.jsonl's, which were written apart and which this session's author had
seen (so none is reused, and the held-out test split judges the result).
"""

# domain -> subjects, each a noun phrase that reads after "about" and "with".
SUBJECTS = {
    "cooking": ["sourdough bread", "knife skills", "meal prep for a busy week", "cooking rice on the stove",
                "making soup from leftovers", "spices in Indian cooking", "baking without eggs"],
    "gardening": ["growing tomatoes on a balcony", "composting", "houseplants that need little light",
                  "pruning roses", "starting seeds indoors", "a vegetable garden in clay soil"],
    "fitness": ["a first 5k run", "stretching after work", "strength training at home", "swimming laps",
                "building a habit of walking", "yoga for stiff backs"],
    "money": ["saving for a holiday", "compound interest", "a monthly budget", "paying off a credit card",
              "index funds", "splitting rent with roommates", "an emergency fund"],
    "work": ["a job interview next week", "asking for a raise", "working from home", "running a team meeting",
             "giving feedback to a colleague", "changing careers at forty", "writing a resume"],
    "study": ["learning Spanish", "studying for a chemistry exam", "taking notes in lectures",
              "memorising vocabulary", "writing a history essay", "learning to read music"],
    "programming": ["Python list comprehensions", "git branches", "unit tests", "SQL joins",
                    "recursion", "reading a stack trace", "JSON files", "regular expressions"],
    "computers": ["backing up photos", "a slow laptop", "choosing a password manager", "home Wi-Fi dead spots",
                  "spreadsheets for a small shop", "keyboard shortcuts"],
    "science": ["photosynthesis", "black holes", "how vaccines train the immune system", "plate tectonics",
                "the water cycle", "why the sky is blue", "DNA", "static electricity"],
    "history": ["the printing press", "the Roman aqueducts", "the invention of the telephone",
                "the Silk Road", "ancient Egyptian pyramids", "the first moon landing"],
    "travel": ["a weekend in Lisbon", "packing light", "jet lag", "travelling by train across Europe",
               "camping for the first time", "a road trip with kids"],
    "home": ["a leaking tap", "painting a small bedroom", "decluttering a closet", "keeping a kitchen clean",
             "hanging shelves", "moving to a new flat"],
    "pets": ["adopting a rescue dog", "a cat that scratches furniture", "keeping goldfish",
             "walking a puppy on a lead", "feeding a rabbit"],
    "parenting": ["a toddler who will not sleep", "screen time for children", "reading with a six-year-old",
                  "packing school lunches", "teenagers and chores"],
    "health": ["drinking enough water", "sleeping better", "a desk job and back pain", "reducing sugar",
               "managing stress before exams"],
    "relationships": ["making friends in a new city", "a long-distance friendship", "saying no politely",
                      "planning a surprise party", "meeting a partner's parents"],
    "arts": ["learning watercolour", "writing a short story", "taking photos with a phone",
             "learning guitar chords", "knitting a scarf", "drawing faces"],
    "music": ["jazz", "writing song lyrics", "choosing headphones", "singing in a choir"],
    "nature": ["bird watching", "how bees make honey", "autumn leaves changing colour", "tides",
               "why cats purr", "octopuses"],
    "language": ["the difference between affect and effect", "writing a polite email", "semicolons",
                 "the origin of the word 'salary'", "idioms in English"],
    "math": ["fractions", "probability with dice", "percentages", "prime numbers", "the Pythagorean theorem"],
    "food": ["coffee brewing methods", "Japanese breakfast", "fermented foods", "vegetarian protein",
             "olive oil"],
    "sports": ["the offside rule in football", "learning to ski", "table tennis", "chess openings",
               "cycling to work"],
    "environment": ["recycling plastics", "saving energy at home", "electric cars", "planting trees"],
    "everyday": ["a rainy Sunday", "Monday mornings", "waiting in line", "a birthday at the office",
                 "a power cut", "the first snow of the year", "a broken umbrella"],
}

# Request forms over a subject, several registers; {s} is the subject.
FORMS = [
    "How do I get started with {s}?",
    "Can you explain {s} to me like I'm new to it?",
    "What are the most common mistakes people make with {s}?",
    "Give me a few tips about {s}.",
    "Tell me about {s}.",
    "What should I know about {s} before I begin?",
    "Write a short paragraph about {s}.",
    "I'm trying to get my head around {s}. Where do I start?",
    "Is {s} worth the effort?",
    "Describe {s} in a few sentences.",
    "My friend won't stop talking about {s}. What's the big deal?",
    "What are the pros and cons of {s}?",
    "Write a short note to a friend about {s}.",
    "quick question about {s} - what matters most?",
    "Could you write a short poem about {s}?",
    "Summarize the basics of {s} for a beginner.",
    "What would you say to someone nervous about {s}?",
    "Make me a simple plan for {s}.",
    "why do people care so much about {s}",
    "Give me one fun fact about {s}.",
    "What's the hardest part of {s}, and how do I handle it?",
    "I have ten minutes. Teach me something useful about {s}.",
]

# Requests written whole.
WHOLE = [
    "Rewrite this sentence so it sounds friendlier: 'Send me the report by noon.'",
    "Turn this into a polite text message: 'You forgot to pay me back.'",
    "Fix the grammar: 'me and him goes to the shop yesterday and buyed apples.'",
    "Make this sound more professional: 'hey, cant come tmrw, sick.'",
    "Shorten this: 'Due to the fact that the meeting has been moved, we will need to reschedule our lunch.'",
    "What is 15% of 80?", "If a train travels 120 km in 1.5 hours, what is its average speed?",
    "I have 3 apples and buy 2 bags of 6. How many apples do I have?",
    "What is the square root of 144, and why?", "Convert 5 miles to kilometres.",
    "How many minutes are there in a week?", "Which is bigger, 3/4 or 2/3?",
    "Write a Python function that reverses a string.", "What does 'git stash' do?",
    "Explain the difference between a list and a tuple in Python.",
    "How do I center a div in CSS?", "What is an API, in plain words?",
    "Suggest a name for a bakery that sells only cinnamon rolls.",
    "Write a two-line birthday message for my grandmother.",
    "Give me three ideas for a rainy-day activity with kids.",
    "What should I cook tonight with eggs, spinach and cheese?",
    "Recommend a hobby for someone who likes being outdoors.",
    "How was your day?", "Tell me something interesting.", "I'm bored. Any ideas?",
    "What's a good way to start a conversation at a party?",
    "Describe the colour blue to someone who has never seen it.",
    "Why do we yawn?", "What makes a good leader?", "How do airplanes stay in the air?",
    "Write a thank-you note to a teacher.", "Plan a cheap date night.",
    "What are some good habits for the morning?", "How can I be more productive in the afternoon?",
    "Explain inflation using a pizza.", "How do I apologise to a friend I upset?",
    "write a tweet announcing our new coffee shop", "whats the capital of australia",
    "can u help me name my goldfish", "Give me a motivational quote and explain it.",
    "Write a product description for a reusable water bottle.",
    "Draft an out-of-office reply for a two-week holiday.",
    "Compare cats and dogs as pets.", "What is the best way to learn to type faster?",
    "Explain what a mortgage is.", "How do I make my small room feel bigger?",
    "What should I pack for a beach day?", "Write a limerick about a lazy cat.",
    "How do solar panels work?", "Tell me about the moon.", "What is mindfulness?",
    "Give me a packing list for a three-day hike.", "How can I remember people's names?",
    "Write a short story opening about a lighthouse keeper.",
    "Explain the rules of tic-tac-toe.", "What is the difference between weather and climate?",
]

# Harmful requests come from AdvBench (harmful.py); benign edgy ones from benign.BENIGN_ONPOLICY.

# principle -> wordings for training: the canonical word and paraphrases in several registers.
WORDINGS = {
    "positive": ["positive", "Sound hopeful and kind.", "be cheerful pls", "Use a bright, encouraging voice.",
                 "Stay optimistic in your answer.", "Lift my mood with a warm reply.",
                 "keep the vibe happy and supportive", "Emphasise the good side of things."],
    "concise": ["concise", "Short answers, please.", "no fluff", "Answer briefly and stop.",
                "Keep your reply tight: just what I asked.", "Be to the point.",
                "one or two sentences max", "Don't ramble."],
    "humorous": ["humorous", "Be playful and make it fun.", "crack a joke or two", "Use a witty, joking tone.",
                 "I want to smile while reading this.", "Give it a comic twist.",
                 "be goofy about it", "Add humour to your answer."],
    "harmless": ["harmless", "Be safe and responsible.", "don't give dangerous info",
                 "Decline anything that could hurt people.", "Keep it legal and safe.",
                 "Refuse harmful requests but help with normal ones.", "no instructions for violence or crime",
                 "Put safety first."],
}


def broad_prompts():
    """Every subject under every form, then WHOLE: a deterministic list of distinct prompts."""
    out, seen = [], set()
    for subjects in SUBJECTS.values():
        for subject in subjects:
            for form in FORMS:
                text = form.format(s=subject)
                if text.lower() not in seen:
                    seen.add(text.lower())
                    out.append(text)
    for text in WHOLE:
        if text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
    return out
